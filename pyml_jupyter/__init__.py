"""pyml_jupyter: from a notebook cell to a checked, versioned, served model.

>>> from pyml_jupyter import DataFrameModel, check, register
>>> class Churn(DataFrameModel):
...     def __init__(self, artifacts): self.clf = artifacts["clf"]
...     def predict(self, df): return pd.DataFrame({"p": self.clf.predict_proba(df)[:, 1]}, index=df.index)
>>> register(Churn, "churn", sample=df.head(), artifacts={"clf": clf})

In a notebook: ``%load_ext pyml_jupyter``, then ``%pyml_check``, ``%pyml_register``, ``%pyml_build``,
``%pyml_deploy``, ``%pyml_test``, ``%pyml_batch`` (``%pyml_<name>?`` for help).
"""

from __future__ import annotations

from .api import (
    RegisteredModel,
    build,
    check,
    deploy,
    deployments,
    list_models,
    load,
    package_path,
    predict_offline,
    register,
    stop,
    test,
)
from .checks import ContractReport
from .errors import PymlError
from .parity import ParityReport
from .serving.contract import DataFrameModel, TensorModel
from .tracking import ModelVersion

from ._version import __version__

__all__ = [
    "DataFrameModel",
    "TensorModel",
    "check",
    "register",
    "list_models",
    "load",
    "package_path",
    "build",
    "deploy",
    "deployments",
    "stop",
    "test",
    "predict_offline",
    "ContractReport",
    "ModelVersion",
    "RegisteredModel",
    "ParityReport",
    "PymlError",
]


def load_ipython_extension(ipython) -> None:
    """``%load_ext pyml_jupyter``: register the ``%pyml_*`` magics."""
    from .magics import PymlMagics

    ipython.register_magics(PymlMagics)


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    return [{"module": "pyml_jupyter.server"}]


def _jupyter_labextension_paths() -> list[dict[str, str]]:
    return [{"src": "labextension", "dest": "pyml_jupyter"}]
