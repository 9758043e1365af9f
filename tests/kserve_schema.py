"""A strict JSON Schema for KServe's ``InferenceService``, derived from KServe's published Python package.

The ``kserve`` wheel carries no JSON or YAML schema, but it carries the API models openapi-generator wrote from
KServe's OpenAPI document (``kserve/models/v1beta1_inference_service.py``, ``v1beta1_predictor_spec.py``...):
each class lists its fields' JSON keys (``attribute_map``) and types (``openapi_types``: ``str``, ``int``,
``list[V1Container]``, ``dict(str, str)``, another model). Kubernetes types (``V1Container``, ``V1ObjectMeta``...)
are the ``kubernetes`` client's models, written by the same generator. :func:`inference_service_schema` walks
those classes from ``V1beta1InferenceService`` down and writes one JSON Schema definition per class: only the
class's keys (anything else is refused), each value of its declared type, and the fields the generated setters
refuse to leave empty (``must not be None``) required.

The package cannot go into the project's environment (it pins protobuf, psutil and grpcio-tools below ours), so
scripts/test.sh installs it with ``--no-deps`` into ``.test-deps/kserve-VERSION`` and :func:`load_models` imports
its ``models`` and ``constants`` subpackages from there by path, without ``kserve/__init__.py`` (which starts
KServe's model server stack: FastAPI, gRPC, Ray...). The models need only ``six``, ``urllib3`` and ``kubernetes``.
"""

from __future__ import annotations

import importlib
import pkgutil
import re
import sys
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Any

KSERVE_VERSION = "0.21.0"
KSERVE_DIR = Path(__file__).resolve().parents[1] / ".test-deps" / f"kserve-{KSERVE_VERSION}"
INSTALL_COMMAND = f"python -m pip install --no-deps --target {KSERVE_DIR} kserve=={KSERVE_VERSION}"

_PRIMITIVES: dict[str, dict[str, Any]] = {
    "str": {"type": "string"}, "int": {"type": "integer"}, "float": {"type": "number"},
    "bool": {"type": "boolean"}, "datetime": {"type": "string"}, "date": {"type": "string"},
    # The generator's type for IntOrString and RawExtension fields (a probe's port, a metric's value): any value.
    "object": {},
}
# Names the generator referenced without writing a class for them. Quantities are strings in the kubernetes
# client's own models (``resources.limits`` is ``dict(str, str)``), and a ``metav1.Time`` is a timestamp.
_ALIASES = {"ResourceQuantity": "str", "V1beta1MetricQuantity": "str", "V1Time": "datetime"}
# Kubernetes types named after their Go package (``K8sIoApiAppsV1DeploymentStrategy``) are the kubernetes client's
# ``V1DeploymentStrategy``.
_GO_PACKAGE_NAME = re.compile(r"K8sIoApi[A-Z][a-z]+(V\d+(?:alpha\d+|beta\d+)?[A-Z]\w*)")
_LIST = re.compile(r"list\[(.+)\]")
_DICT = re.compile(r"dict[(\[]str, ?(.+)[)\]]")


@dataclass(frozen=True)
class KServeModels:
    """KServe's generated model classes by name, its API group/version and kind constants, and its version."""

    classes: dict[str, type]
    api_version: str
    kind: str
    version: str


def installed_version(root: Path = KSERVE_DIR) -> str | None:
    """The version of the ``kserve`` distribution installed under ``root``, or None when there is none."""
    found = sorted(root.glob("kserve-*.dist-info"))
    return found[0].name.removeprefix("kserve-").removesuffix(".dist-info") if found else None


def load_models(root: Path = KSERVE_DIR) -> KServeModels:
    """Import ``kserve.models`` and ``kserve.constants`` from ``root`` without running ``kserve/__init__.py``.

    A bare ``kserve`` package object pointing at ``root/kserve`` stands in for the real one while the modules load
    (the generated code imports ``kserve.configuration`` by absolute name); afterwards ``sys.modules`` is put back
    as it was, so nothing else in the test session sees this copy of the package."""
    saved = {name: module for name, module in sys.modules.items() if name == "kserve" or name.startswith("kserve.")}
    for name in saved:
        del sys.modules[name]
    package = types.ModuleType("kserve")
    package.__path__ = [str(root / "kserve")]
    sys.modules["kserve"] = package
    try:
        constants = importlib.import_module("kserve.constants.constants")
        classes: dict[str, type] = {}
        for info in pkgutil.iter_modules([str(root / "kserve" / "models")]):
            module = importlib.import_module(f"kserve.models.{info.name}")
            classes.update({name: value for name, value in vars(module).items()
                            if isinstance(value, type) and hasattr(value, "openapi_types")
                            and value.__module__ == module.__name__})
    finally:
        for name in [n for n in sys.modules if n == "kserve" or n.startswith("kserve.")]:
            del sys.modules[name]
        sys.modules.update(saved)
    return KServeModels(classes, constants.KSERVE_V1BETA1, constants.KSERVE_KIND_INFERENCESERVICE,
                        installed_version(root) or "unknown")


def _required(cls: type) -> list[str]:
    """The JSON keys whose generated setter refuses None when client-side validation is on."""
    probe = cls.__new__(cls)
    probe.local_vars_configuration = types.SimpleNamespace(client_side_validation=True)
    required = []
    for attribute, key in cls.attribute_map.items():
        try:
            setattr(probe, attribute, None)
        except ValueError:
            required.append(key)
    return required


class _SchemaWriter:
    """Writes one ``$defs`` entry per model class reached from a root type."""

    def __init__(self, kserve: dict[str, type]) -> None:
        from kubernetes import client

        self.kserve, self.kubernetes = kserve, client
        self.defs: dict[str, Any] = {}
        self.unresolved: set[str] = set()

    def _class(self, name: str) -> type | None:
        if name in self.kserve:
            return self.kserve[name]
        match = _GO_PACKAGE_NAME.fullmatch(name)
        return getattr(self.kubernetes, match.group(1) if match else name, None)

    def type_schema(self, name: str) -> dict[str, Any] | bool:
        """The schema of one ``openapi_types`` entry."""
        name = _ALIASES.get(name.strip(), name.strip())
        if name in _PRIMITIVES:
            return _PRIMITIVES[name]
        if match := _LIST.fullmatch(name):
            return {"type": "array", "items": self.type_schema(match.group(1))}
        if match := _DICT.fullmatch(name):
            return {"type": "object", "additionalProperties": self.type_schema(match.group(1))}
        cls = self._class(name)
        if cls is None:  # a type the package does not define cannot be checked, so no value is accepted
            self.unresolved.add(name)
            return False
        if name not in self.defs:
            self.defs[name] = {}  # placeholder first: model graphs can be recursive
            self.defs[name] = self.class_schema(cls)
        return {"$ref": f"#/$defs/{name}"}

    def class_schema(self, cls: type) -> dict[str, Any]:
        properties = {cls.attribute_map[attribute]: self.type_schema(type_name)
                      for attribute, type_name in cls.openapi_types.items()}
        schema = {"type": "object", "properties": properties, "additionalProperties": False}
        if required := _required(cls):
            schema["required"] = required
        return schema


def inference_service_schema(models: KServeModels) -> dict[str, Any]:
    """A strict JSON Schema (draft 2020-12) for a ``V1beta1InferenceService`` as KServe's models define it, with
    ``apiVersion`` and ``kind`` pinned to KServe's constants and ``metadata``/``spec`` required (the API server
    requires them of any object; the generated models make every top-level field optional).

    ``$comment`` lists the types the models name without defining (no value is accepted for them)."""
    writer = _SchemaWriter(models.classes)
    root = writer.type_schema("V1beta1InferenceService")
    schema = writer.defs["V1beta1InferenceService"]
    schema["properties"] |= {"apiVersion": {"const": models.api_version}, "kind": {"const": models.kind}}
    schema["required"] = sorted({*schema.get("required", ()), "apiVersion", "kind", "metadata", "spec"})
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **root, "$defs": writer.defs,
            "$comment": f"kserve {models.version}; undefined types: {', '.join(sorted(writer.unresolved)) or 'none'}"}


def undefined_types(models: KServeModels, root: str) -> set[str]:
    """The type names reachable from ``root`` that neither KServe's models nor the kubernetes client define."""
    writer = _SchemaWriter(models.classes)
    writer.type_schema(root)
    return writer.unresolved
