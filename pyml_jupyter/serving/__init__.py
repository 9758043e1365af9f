"""The serving runtime: load a model package and serve it over HTTP and gRPC (``python -m pyml_jupyter.serving PACKAGE``).

A leaf: it imports nothing else of pyml_jupyter, nor Jupyter, MLflow or Docker, so the image builder copies this
folder alone into the image. Keep this file free of imports: it is read on every ``import`` of a submodule.
"""

# The distributions the runtime itself needs; the image builder pins them to the versions installed here.
RUNTIME_REQUIREMENTS = ("starlette", "uvicorn", "pandas", "numpy", "grpcio", "protobuf")
# Used when installed (faster HTTP parsing and event loop; see server.py); the runtime works without them.
RUNTIME_OPTIONAL_REQUIREMENTS = ("httptools", "uvloop")
