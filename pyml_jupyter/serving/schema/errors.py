"""What the schema package raises: :class:`SchemaError`, listing every problem with the data or a spec."""

from __future__ import annotations

from typing import Any, Iterable, Mapping

import numpy as np

__all__ = ["SchemaError"]

_DATA = "<data>"  # the ``field`` of a problem about the data as a whole


class SchemaError(ValueError):
    """Data (or a schema spec) that does not match; ``problems`` lists each ``{"field", "error"}``."""

    def __init__(self, problems: Iterable[Mapping[str, str]], summary: str | None = None) -> None:
        self.problems: list[dict] = [{"field": str(p["field"]), "error": str(p["error"])} for p in problems]
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


class _Problem(Exception):
    """One problem with one field, raised inside a converter."""


def _spec_error(field_name: str, error: str) -> SchemaError:
    return SchemaError([{"field": field_name, "error": error}], summary="Invalid schema")


def _short(value: Any) -> str:
    if isinstance(value, np.generic):
        value = value.item()
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"

