"""The MLflow pyfunc loader module for pyml model packages.

MLflow's ``pyfunc`` flavor calls ``_load_pyfunc(data_path)`` with the package folder that was logged as the
model's data; ``mlflow.pyfunc.load_model(uri).predict(df)`` then goes through :class:`PyfuncModel`, which
enforces the input schema with the one schema module before the model's own code runs. No pickled user
class is involved: the captured ``model.py`` is the code. This module does not import MLflow.
"""

from __future__ import annotations

from typing import Any

from .loader import LoadedModel, load_package


class PyfuncModel:
    """What ``mlflow.pyfunc.load_model`` wraps."""

    def __init__(self, loaded: LoadedModel) -> None:
        self.loaded = loaded

    def predict(self, model_input: Any, params: dict[str, Any] | None = None) -> Any:
        return self.loaded.predict(model_input)

    def unwrap_python_model(self) -> Any:
        return self.loaded.model


def _load_pyfunc(data_path: str, model_config: Any = None) -> PyfuncModel:
    return PyfuncModel(load_package(data_path))
