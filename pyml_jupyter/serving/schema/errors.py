"""What the schema package raises: :class:`SchemaError`, listing every problem with the data or a spec.

A problem that breaks a rule spanning fields (one the OpenAPI document cannot state) names it in ``"rule"``, given
where the problem is found, with the ids below: the serving runtime's ``rules`` module lists them, with the
rest of the rules and what each says."""

from __future__ import annotations

from typing import Any, Iterable, Mapping

import numpy as np

__all__ = ["SchemaError", "problem", "SAME_LENGTH", "ROW_WIDTH", "EVERY_COLUMN", "EVERY_TENSOR", "TENSOR_SHAPE",
           "RECTANGULAR"]

_DATA = "<data>"  # the ``field`` of a problem about the data as a whole

# The rules spanning fields that the schema package finds (their statements: serving/rules.py).
SAME_LENGTH = "same-length"
ROW_WIDTH = "row-width"
EVERY_COLUMN = "every-column"
EVERY_TENSOR = "every-tensor"
TENSOR_SHAPE = "tensor-shape"
RECTANGULAR = "rectangular"


class SchemaError(ValueError):
    """Data (or a schema spec) that does not match; ``problems`` lists each ``{"field", "error"}``, plus the
    ``"rule"`` it breaks when that is a rule spanning fields."""

    def __init__(self, problems: Iterable[Mapping[str, str]], summary: str | None = None) -> None:
        self.problems: list[dict] = [problem(p["field"], p["error"], p.get("rule")) for p in problems]
        self.summary = summary or "The data does not match the schema"
        super().__init__(self._message())

    def _message(self) -> str:
        n = len(self.problems)
        if not n:
            return self.summary + "."
        parts = []
        for p in self.problems:
            named = p["field"] == _DATA or f"'{p['field']}'" in p["error"]
            parts.append(p["error"] if named else f"'{p['field']}': {p['error']}")
        return f"{self.summary} ({n} problem{'s' if n > 1 else ''}): " + "; ".join(parts) + "."

    def __reduce__(self):  # picklable with its problems (Spark ships exceptions between processes)
        return (type(self), (self.problems, self.summary))

    def to_dict(self) -> dict:
        """JSON form: ``{"error": "schema", "message": str, "problems": [...]}``."""
        return {"error": "schema", "message": str(self), "problems": [dict(p) for p in self.problems]}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "SchemaError":
        """Rebuild an error from :meth:`to_dict` (e.g. a client reading a 400 response)."""
        return cls(d.get("problems", []))


def problem(field: str, error: str, rule: str | None = None) -> dict:
    """One problem: ``{"field", "error"}``, and ``"rule"`` when it breaks a rule spanning fields."""
    out = {"field": str(field), "error": str(error)}
    if rule is not None:
        out["rule"] = str(rule)
    return out


class _Problem(Exception):
    """One problem with one field, raised inside a converter; ``rule`` as in :func:`problem`."""

    def __init__(self, error: str, rule: str | None = None) -> None:
        super().__init__(error)
        self.rule = rule


def _spec_error(field_name: str, error: str) -> SchemaError:
    return SchemaError([{"field": field_name, "error": error}], summary="Invalid schema")


def _short(value: Any) -> str:
    if isinstance(value, np.generic):
        value = value.item()
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"

