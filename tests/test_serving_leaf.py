"""The serving runtime is a leaf: copied alone (as the image builder copies it), it imports and serves.

The copy is ``LEAF/pyml_jupyter/serving/`` with no ``pyml_jupyter/__init__.py``, so ``pyml_jupyter`` is a
namespace package, exactly as in the image. The interpreter runs isolated (``-I -S``): ``site`` does not run,
so the editable install's ``.pth`` (which puts this repository on the path) is not read; the path is the
standard library, the copy, and the site-packages directories (for numpy, pandas, starlette...).
"""

from __future__ import annotations

import http.client
import json
import shutil
import site
import subprocess
import sys
from pathlib import Path

import pytest

import pyml_jupyter.serving
from processes import free_port, running

FORBIDDEN = ("mlflow", "IPython", "ipykernel", "ipywidgets", "jupyter_server", "jupyter_client", "jupyterlab",
             "tornado", "docker", "pyspark", "nbformat")

PRELUDE = """
import json, sys
ROOT, SITE = json.loads(sys.argv[1])
sys.path[:0] = [ROOT]
sys.path.extend(SITE)
"""

SERVE_IN_PROCESS = PRELUDE + """
FORBIDDEN = set(json.loads(sys.argv[3]))
attempted = []

class Watch:
    # Notes every attempt to import a forbidden module, even one that would fail or be caught.
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in FORBIDDEN:
            attempted.append(name)
        return None

sys.meta_path.insert(0, Watch())

from starlette.testclient import TestClient
from pyml_jupyter.serving.app import create_app
import pyml_jupyter

with TestClient(create_app(sys.argv[2])) as client:
    records = [{"x1": 0.5, "x2": -1.0, "city": "paris"}]
    answer = client.post("/invocations", json={"dataframe_records": records})
    v2 = client.get("/v2/models/ExampleModel")
print(json.dumps({
    "status": answer.status_code,
    "predictions": answer.json().get("predictions"),
    "v2_status": v2.status_code,
    "attempted": attempted,
    "loaded": sorted(m for m in sys.modules if m.split(".")[0] in FORBIDDEN),
    "pyml_modules": sorted(m for m in sys.modules if m.split(".")[0] == "pyml_jupyter"),
    "namespace_file": getattr(pyml_jupyter, "__file__", None),
    "namespace_path": list(pyml_jupyter.__path__),
    "serving_file": sys.modules["pyml_jupyter.serving"].__file__,
}))
"""

SERVE_WITH_UVICORN = PRELUDE + """
import runpy
sys.argv = ["pyml_jupyter.serving", *sys.argv[2:]]
runpy.run_module("pyml_jupyter.serving", run_name="__main__", alter_sys=True)
"""


@pytest.fixture
def leaf(tmp_path: Path) -> Path:
    """The runtime copied alone: LEAF/pyml_jupyter/serving/, no pyml_jupyter/__init__.py."""
    source = Path(pyml_jupyter.serving.__file__).parent
    root = tmp_path / "leaf"
    shutil.copytree(source, root / "pyml_jupyter" / "serving", ignore=shutil.ignore_patterns("__pycache__"))
    assert not (root / "pyml_jupyter" / "__init__.py").exists()
    return root


def _site_dirs() -> list[str]:
    # The site-packages folders themselves hold no pyml_jupyter (the editable install adds the repository
    # through a .pth file, which -S leaves unread).
    dirs = site.getsitepackages()
    assert not any((Path(d) / "pyml_jupyter" / "__init__.py").exists() for d in dirs)
    return dirs


def _isolated(script: str, leaf: Path, *args: str) -> list[str]:
    return [sys.executable, "-I", "-S", "-c", script, json.dumps([str(leaf), _site_dirs()]), *args]


def test_runtime_serves_with_nothing_else_of_the_package(leaf: Path, example_package: Path, tmp_path: Path):
    done = subprocess.run(_isolated(SERVE_IN_PROCESS, leaf, str(example_package), json.dumps(FORBIDDEN)),
                          capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["status"] == 200 and len(result["predictions"]) == 1
    assert set(result["predictions"][0]) == {"score", "label"}
    assert result["v2_status"] == 200
    assert result["attempted"] == [] and result["loaded"] == []
    assert result["namespace_file"] is None  # a namespace package: no pyml_jupyter/__init__.py was used
    assert result["namespace_path"] == [str(leaf / "pyml_jupyter")]
    assert result["serving_file"] == str(leaf / "pyml_jupyter" / "serving" / "__init__.py")
    assert all(m == "pyml_jupyter" or m.startswith("pyml_jupyter.serving") for m in result["pyml_modules"])


def test_python_m_serving_runs_from_the_copy(leaf: Path, example_package: Path, tmp_path: Path):
    port = free_port()
    command = _isolated(SERVE_WITH_UVICORN, leaf, str(example_package), "--port", str(port), "--log-level", "warning")
    with running(command, port, cwd=tmp_path):
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        body = json.dumps({"dataframe_split": {"columns": ["x1", "x2", "city"], "data": [[0.5, -1.0, "paris"]]}})
        connection.request("POST", "/invocations", body=body, headers={"Content-Type": "application/json"})
        response = connection.getresponse()
        assert response.status == 200
        assert len(json.loads(response.read())["predictions"]) == 1
