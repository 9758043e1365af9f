"""Model names and model references: the one rule for names, the one parser for refs.

A model name travels into the MLflow registry, a Docker image tag (``pyml/NAME:VERSION``, lowercased), a
container name (``pyml-NAME-VERSION``), labels, paths and SQL strings. :func:`validate_name` accepts exactly the
names all of them accept, by a full match (so ``"churn\\n"`` is refused, not mapped to ``churn``).

A model reference names one registered version: ``NAME`` (the latest version), ``NAME/3``, ``NAME@ALIAS``,
with an optional ``models:/`` prefix as MLflow writes them (``models:/churn/3``, ``models:/churn@champion``).
``NAME@latest`` is the latest version. :func:`parse_ref` is the only parser; anything else is an
:class:`~pyml_jupyter.errors.InvalidName` (HTTP 400, a ``UsageError`` in magics), never a crash.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from .errors import InvalidName

__all__ = ["NAME_RULE", "MAX_NAME_LENGTH", "ModelRef", "validate_name", "parse_ref", "name_key"]

MAX_NAME_LENGTH = 63
NAME_RULE = (f"1 to {MAX_NAME_LENGTH} ASCII letters and digits, with single '.', '_' or '-' between them "
             "(not at the start or the end, never two in a row)")
# The intersection of MLflow's registry, Docker's repository-path grammar (once lowercased) and Docker's
# container-name grammar ([a-zA-Z0-9][a-zA-Z0-9_.-]+).
_NAME_RE = re.compile(r"[A-Za-z0-9]+(?:[._-][A-Za-z0-9]+)*")
# MLflow's alias rule (letters, digits, '_' and '-'), ASCII only; "vN" is reserved by MLflow for versions.
_ALIAS_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_-]{0,254}")
# A registry version: a positive integer written with ASCII digits, small enough for MLflow's integer column.
_VERSION_RE = re.compile(r"[1-9][0-9]{0,9}")
MAX_VERSION = 2**31 - 1
REF_FORMS = "NAME, NAME/VERSION, NAME@ALIAS or models:/NAME/VERSION (e.g. 'churn', 'churn/3', 'churn@champion')"


def validate_name(name: str) -> str:
    """``name`` if MLflow, Docker image tags and container names all accept it, else :class:`InvalidName`."""
    if not isinstance(name, str) or len(name) > MAX_NAME_LENGTH or not _NAME_RE.fullmatch(name):
        shown = repr(name) if not isinstance(name, str) or len(name) <= 80 else repr(name[:80] + "...")
        raise InvalidName(f"{shown} is not a valid model name: use {NAME_RULE}, e.g. 'churn_model'.")
    return name


def name_key(name: str) -> str:
    """The form under which two names are the same model to Docker and to a reader: case and spaces ignored."""
    return name.strip().casefold()


@dataclass(frozen=True)
class ModelRef:
    """A parsed model reference: a name and at most one of ``version`` or ``alias`` (neither: the latest)."""

    name: str
    version: int | None = None
    alias: str | None = None
    entity: Any = field(default=None, compare=False, repr=False, hash=False)
    """After :func:`~pyml_jupyter.tracking.resolve_ref`: MLflow's ``ModelVersion`` it resolved to."""

    @property
    def run_id(self) -> str:
        return getattr(self.entity, "run_id", "") or ""

    @property
    def uri(self) -> str:
        return f"models:/{self}"

    def __str__(self) -> str:
        if self.version is not None:
            return f"{self.name}/{self.version}"
        return f"{self.name}@{self.alias}" if self.alias else self.name


def parse_ref(ref: str | ModelRef) -> ModelRef:
    """Parse ``NAME``, ``NAME/VERSION``, ``NAME@ALIAS`` (``models:/`` optional) into a :class:`ModelRef`."""
    if isinstance(ref, ModelRef):
        return ref
    if not isinstance(ref, str) or not ref:
        raise InvalidName(f"a model reference is {REF_FORMS}, not {ref!r}.")
    body = ref[len("models:/"):] if ref.startswith("models:/") else ref
    alias: str | None = None
    version: int | None = None
    if "@" in body:
        body, _, alias = body.partition("@")
        if not _ALIAS_RE.fullmatch(alias) or re.fullmatch(r"[vV][0-9]+", alias):
            raise InvalidName(f"{alias[:80]!r} in {ref[:120]!r} is not a model alias: aliases are letters, digits, "
                              f"'_' and '-' (e.g. 'champion'); a model reference is {REF_FORMS}.")
        if alias.lower() == "latest":
            alias = None
    if "/" in body:
        body, _, text = body.partition("/")
        if alias is not None or "@" in ref.partition("/")[2] or not _VERSION_RE.fullmatch(text) \
                or int(text) > MAX_VERSION:
            raise InvalidName(f"{text[:20]!r} in {ref[:120]!r} is not a model version: versions are positive "
                              f"integers written with digits 0-9, e.g. '{body[:63]}/3'.")
        version = int(text)
    return ModelRef(validate_name(body), version, alias)
