"""Write a model package to disk: the unit everything downstream consumes.

The layout is documented in :mod:`pyml_jupyter.serving.loader`, which reads it back. This module writes it from
a captured class, its artifacts and its sample; nothing downstream re-captures from the notebook.
"""

from __future__ import annotations

import json
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from .capture import CapturedSource
from .requirements import Requirements
from .serving.artifacts import save_artifact
from .serving.loader import CONTRACT_FILE, FORMAT_VERSION, PackageInfo, read_package
from .serving.schema import DataFrameSchema, TensorSchema, dataframe_to_json, tensors_to_json

__all__ = ["SavedArtifacts", "save_artifacts", "write_package", "RUNTIME_DISTRIBUTIONS"]

RUNTIME_DISTRIBUTIONS = ("numpy", "pandas")
"""Distributions the serving runtime itself needs wherever a package is loaded (MLflow, image, Spark)."""


@dataclass
class SavedArtifacts:
    """Artifacts written to ``artifacts/``: their specs for ``pyml.json`` and the modules their pickles use."""

    specs: dict[str, dict] = field(default_factory=dict)
    modules: set[str] = field(default_factory=set)


def save_artifacts(artifacts: Mapping[str, Any] | None, directory: Path) -> SavedArtifacts:
    """Serialize each artifact with the right tool (raises ``ValueError`` naming one that cannot be)."""
    saved = SavedArtifacts()
    directory.mkdir(parents=True, exist_ok=True)
    for name, obj in (artifacts or {}).items():
        spec = save_artifact(obj, directory, name)
        saved.modules.update(spec.get("modules", ()))
        saved.specs[name] = spec
    return saved


def _sample_json(kind: str, sample: Any) -> dict:
    return dataframe_to_json(sample) if kind == "dataframe" else tensors_to_json(sample)


def write_package(
    directory: Path,
    *,
    captured: CapturedSource,
    artifacts: SavedArtifacts,
    requirements: Requirements,
    sample: Any,
    input_schema: DataFrameSchema | TensorSchema,
    output_schema: DataFrameSchema | TensorSchema,
    takes_artifacts: bool,
    metadata: Mapping[str, Any] | None = None,
) -> PackageInfo:
    """Write ``model.py``, ``requirements.txt``, ``sample.json`` and ``pyml.json`` beside ``artifacts/``."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "artifacts").mkdir(exist_ok=True)
    (directory / "model.py").write_text(captured.source)
    (directory / "requirements.txt").write_text(requirements.to_text())
    (directory / "sample.json").write_text(json.dumps(_sample_json(captured.kind, sample)))
    contract = {
        "format_version": FORMAT_VERSION,
        "kind": captured.kind,
        "class_name": captured.class_name,
        "python_version": ".".join(map(str, sys.version_info[:3])),
        "input_schema": input_schema.to_dict(),
        "output_schema": output_schema.to_dict(),
        "artifacts": artifacts.specs,
        "takes_artifacts": takes_artifacts,
        "helpers": list(captured.helpers),
        "requirements": list(requirements.pinned),
        "metadata": dict(metadata or {}),
    }
    (directory / CONTRACT_FILE).write_text(json.dumps(contract, indent=2, sort_keys=False) + "\n")
    return read_package(directory)


def copy_package(source: Path, destination: Path) -> Path:
    """Copy a package folder (without caches)."""
    shutil.copytree(source, destination, ignore=shutil.ignore_patterns("__pycache__"), dirs_exist_ok=True)
    return destination
