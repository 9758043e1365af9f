"""Write a model package to disk: the unit everything downstream consumes.

The layout is documented in :mod:`pyml_jupyter.serving.loader`, which reads it back. This module writes it from
a captured class, its artifacts and its sample; nothing downstream re-captures from the notebook.

Writing is one step in three moves, because the contract check learns the schemas only by running the model:
:func:`capture_package` captures the source and saves the artifacts, :meth:`PackageDraft.write` writes the
package once the schemas are known, and :meth:`PackageDraft.pin_requirements` pins its requirements.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from .capture import CapturedSource, capture_class
from .errors import CaptureError
from .requirements import Requirements, resolve_requirements
from .serving.artifacts import load_artifacts, save_artifact
from .serving.loader import CONTRACT_FILE, FORMAT_VERSION, PackageInfo, read_package
from .serving.schema import DataFrameSchema, TensorSchema, dataframe_to_json, tensors_to_json

__all__ = [
    "PackageDraft", "SavedArtifacts", "capture_package", "save_artifacts", "set_contract_field", "write_package",
    "write_requirements", "RUNTIME_DISTRIBUTIONS",
]

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
        "requirements": [],
        "metadata": dict(metadata or {}),
    }
    _replace_text(directory / CONTRACT_FILE, json.dumps(contract, indent=2, sort_keys=False) + "\n")
    write_requirements(directory, requirements)
    return read_package(directory)


def write_requirements(directory: Path, requirements: Requirements) -> None:
    """(Re)write ``requirements.txt`` and the contract's ``requirements`` list of a written package.

    Each file is replaced atomically: a process loading the package meanwhile reads the old or the new file,
    never half of one (the contract check runs the fresh process while the requirements are resolved).
    """
    _replace_text(directory / "requirements.txt", requirements.to_text())
    contract = json.loads((directory / CONTRACT_FILE).read_text())
    contract["requirements"] = list(requirements.pinned)
    _replace_text(directory / CONTRACT_FILE, json.dumps(contract, indent=2, sort_keys=False) + "\n")


def set_contract_field(directory: Path, name: str, value: Any) -> None:
    """Record one finding in a written package's contract (``pyml.json``), e.g. ``batch_invariant``."""
    contract = json.loads((directory / CONTRACT_FILE).read_text())
    contract[name] = value
    _replace_text(directory / CONTRACT_FILE, json.dumps(contract, indent=2, sort_keys=False) + "\n")


def _replace_text(path: Path, text: str) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(text)
    os.replace(temporary, path)


@dataclass
class PackageDraft:
    """A class captured for a package in ``directory``: its source and saved artifacts, before the contract."""

    directory: Path
    captured: CapturedSource
    artifacts: SavedArtifacts
    loaded_artifacts: dict[str, Any]
    """The artifacts as the package loads them back: what the model is constructed from."""

    def write(self, *, sample: Any, input_schema: DataFrameSchema | TensorSchema,
              output_schema: DataFrameSchema | TensorSchema, takes_artifacts: bool) -> PackageInfo:
        """Write the package, with empty requirements until :meth:`pin_requirements`."""
        return write_package(self.directory, captured=self.captured, artifacts=self.artifacts,
                             requirements=Requirements(), sample=sample, input_schema=input_schema,
                             output_schema=output_schema, takes_artifacts=takes_artifacts)

    def pin_requirements(self) -> Requirements:
        """Resolve the distributions the source and the artifacts import, and write them into the package."""
        modules = set(self.captured.modules) | self.artifacts.modules
        requirements = resolve_requirements(modules, extra=RUNTIME_DISTRIBUTIONS)
        write_requirements(self.directory, requirements)
        return requirements


def capture_package(model_class: type, artifacts: Mapping[str, Any], directory: Path, *,
                    namespace: Mapping[str, Any] | None = None) -> PackageDraft:
    """Capture ``model_class`` and save ``artifacts`` under ``directory``, loading them back to prove they load.

    Raises :class:`~pyml_jupyter.errors.CaptureError` saying what to fix.
    """
    captured = capture_class(model_class, namespace, artifact_names=list(artifacts))
    try:
        saved = save_artifacts(artifacts, directory / "artifacts")
        loaded = load_artifacts(directory / "artifacts", saved.specs)
    except Exception as e:  # noqa: BLE001 - any serialization failure is the user's to fix
        raise CaptureError(f"an artifact cannot be saved and loaded back: {e}") from e
    notebook_classes = [n for n, spec in saved.specs.items() if "__main__" in spec.get("modules", ())]
    if notebook_classes:
        raise CaptureError(
            f"artifact(s) {', '.join(notebook_classes)} contain objects of a class defined in the notebook, which "
            "a pickle can only find in the notebook itself. Move that class into an importable module (a package "
            "installed with pip), or create the object in the model's constructor.")
    return PackageDraft(directory, captured, saved, loaded)
