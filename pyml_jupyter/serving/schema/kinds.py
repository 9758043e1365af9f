"""Either kind of schema, chosen by name: ``"dataframe"`` or ``"tensor"``."""

from __future__ import annotations

from typing import Any, Mapping, Union

from .dataframe import DataFrameSchema
from .errors import _DATA, _spec_error
from .tensors import TensorSchema

__all__ = ["Schema", "schema_from_dict", "schema_from_spec"]

Schema = Union[DataFrameSchema, TensorSchema]


def schema_from_dict(d: Mapping[str, Any]) -> Schema:
    """A schema from its :meth:`to_dict` form, dispatching on ``d["type"]``."""
    kind = d.get("type") if isinstance(d, Mapping) else None
    if kind == "dataframe":
        return DataFrameSchema.from_dict(d)
    if kind == "tensor":
        return TensorSchema.from_dict(d)
    raise _spec_error(_DATA, f"a schema dict needs 'type' 'dataframe' or 'tensor', got {kind!r}")


def schema_from_spec(spec: Any, kind: str) -> Schema:
    """A schema from a model's declared ``input_schema``/``output_schema``, for a model ``kind``."""
    if kind == "dataframe":
        return DataFrameSchema.from_spec(spec)
    if kind == "tensor":
        return TensorSchema.from_spec(spec)
    raise ValueError(f"unknown model kind {kind!r}; expected 'dataframe' or 'tensor'")
