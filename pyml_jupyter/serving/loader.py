"""Load a model package and predict with it: the one place a package becomes a running model.

A model package is a folder::

    pyml.json          the contract: kind, class name, input/output schemas, artifacts, python version, and
                       whether the contract check proved batch invariance (``batch_invariant``)
    model.py           the captured source (imports, helpers, the model class), readable and runnable
    artifacts/         the trained objects, one file each (joblib, numpy, torch or pickle)
    requirements.txt   pinned ``name==version`` lines, one per distribution the model needs
    sample.json        the sample input, in the JSON form of :mod:`pyml_jupyter.serving.schema`

The notebook's fresh-process check, the MLflow pyfunc flavor, the served container and the Spark job all load
it with :func:`load_package`, and all predict through :meth:`LoadedModel.predict`, which enforces the input
schema before user code runs. This module is part of the serving runtime: stdlib, numpy and pandas only.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .artifacts import load_artifacts
from .schema import DataFrameSchema, TensorSchema, dataframe_from_json, schema_from_dict, tensors_from_json

__all__ = ["CONTRACT_FILE", "PackageInfo", "ModelContract", "LoadedModel", "read_package", "load_package", "package_digest"]

CONTRACT_FILE = "pyml.json"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class PackageInfo:
    """What ``pyml.json`` says about a package, with the schemas as objects."""

    path: Path
    kind: str
    class_name: str
    input_schema: DataFrameSchema | TensorSchema
    output_schema: DataFrameSchema | TensorSchema
    artifacts: dict[str, dict]
    python_version: str
    takes_artifacts: bool
    metadata: dict = field(default_factory=dict)
    # True only when the contract check proved that all rows at once predict like one row at a time; the
    # serving runtime batches concurrent requests of such models only (absent: not proven).
    batch_invariant: bool = False

    def read_sample(self) -> Any:
        """The sample input, with exactly the input schema's dtypes."""
        raw = json.loads((self.path / "sample.json").read_text())
        if self.kind == "dataframe":
            return dataframe_from_json(raw, self.input_schema)
        return tensors_from_json(raw, self.input_schema)


def read_package(path: str | os.PathLike) -> PackageInfo:
    """Read a package's contract file without importing its code."""
    root = Path(path)
    contract_path = root / CONTRACT_FILE
    if not contract_path.is_file():
        raise FileNotFoundError(f"{root} is not a pyml model package: it has no {CONTRACT_FILE}")
    c = json.loads(contract_path.read_text())
    if c.get("format_version", 1) > FORMAT_VERSION:
        raise ValueError(f"{root} was written by a newer pyml_jupyter (format {c['format_version']})")
    return PackageInfo(
        path=root,
        kind=c["kind"],
        class_name=c["class_name"],
        input_schema=schema_from_dict(c["input_schema"]),
        output_schema=schema_from_dict(c["output_schema"]),
        artifacts=c.get("artifacts", {}),
        python_version=c.get("python_version", ""),
        takes_artifacts=c.get("takes_artifacts", True),
        metadata=c.get("metadata", {}),
        batch_invariant=c.get("batch_invariant") is True,
    )


def _import_model_module(info: PackageInfo):
    # A unique module name per package so that two packages (two versions of a model) load side by side.
    digest = hashlib.sha1(str(info.path.resolve()).encode()).hexdigest()[:12]
    name = f"pyml_model_{digest}"
    spec = importlib.util.spec_from_file_location(name, info.path / "model.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # pickle and dataclasses look classes up by module
    spec.loader.exec_module(module)
    return module


class ModelContract:
    """What reading a request needs of a model: its contract, without its code (a parse process holds one)."""

    def __init__(self, info: PackageInfo) -> None:
        self.info = info

    @property
    def kind(self) -> str:
        return self.info.kind

    def enforce(self, data: Any) -> Any:
        """The input as the model will see it: the input schema enforced (raises ``SchemaError``)."""
        return self.info.input_schema.enforce(data).data


class LoadedModel(ModelContract):
    """A model package loaded once, ready to predict many times."""

    def __init__(self, info: PackageInfo) -> None:
        super().__init__(info)
        module = _import_model_module(info)
        model_class = getattr(module, info.class_name)
        artifacts = load_artifacts(info.path / "artifacts", info.artifacts)
        self.model = model_class(artifacts) if info.takes_artifacts else model_class()

    def predict(self, data: Any) -> Any:
        """Enforce the input schema, then call the model's own ``predict``."""
        return self.model.predict(self.enforce(data))

    def predict_enforced(self, data: Any) -> Any:
        """Call the model on input that already went through :meth:`enforce`."""
        return self.model.predict(data)


def load_package(path: str | os.PathLike) -> LoadedModel:
    """Load a model package: import ``model.py``, load the artifacts, construct the model."""
    return LoadedModel(read_package(path))


def package_digest(path: str | os.PathLike) -> str:
    """A sha256 over every file of the package (names and bytes): the contract digest images are labelled with."""
    root = Path(path)
    h = hashlib.sha256()
    for f in sorted(p for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts):
        h.update(f.relative_to(root).as_posix().encode() + b"\0")
        h.update(f.read_bytes())
    return "sha256:" + h.hexdigest()

