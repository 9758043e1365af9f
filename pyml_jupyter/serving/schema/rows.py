"""Tensors as table rows: a tensor of shape ``(-1,)`` is a column of scalars, one of shape ``(-1, k)`` a column
of length-``k`` arrays, one row per element along the first axis. The Spark job converts a pandas batch to
named arrays (and the predictions back) with these two functions, at the edges of its one scorer."""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import pandas as pd

from .errors import SchemaError
from .tensors import TensorSchema, TensorSpec, _shape_text

__all__ = ["row_shape_problem", "tensors_from_rows", "tensors_to_rows"]


def row_shape_problem(spec: TensorSpec) -> str | None:
    """Why a tensor has no column form (None if it has one: shape ``(-1,)`` or ``(-1, k)`` with a fixed ``k``)."""
    if spec.shape[:1] == (None,) and (len(spec.shape) == 1 or (len(spec.shape) == 2 and spec.shape[1] is not None)):
        return None
    return (f"tensor '{spec.name}' has shape {_shape_text(spec.shape)}; a table row holds one element of a tensor "
            f"of shape (None,) (a column of scalars) or (None, k) with a fixed k (a column of arrays of length k)")


def tensors_from_rows(frame: pd.DataFrame, schema: TensorSchema) -> dict[str, np.ndarray]:
    """The named arrays a frame's rows hold: each tensor of ``schema`` from the column of its name."""
    out: dict[str, np.ndarray] = {}
    problems = []
    for spec in schema.tensors:
        column = frame[spec.name]
        if len(spec.shape) == 1:
            out[spec.name] = column.to_numpy()
            continue
        k = spec.shape[1]
        bad = [v for v in column if v is None or np.ndim(v) != 1 or len(v) != k]
        if bad:
            found = "NULL" if bad[0] is None else f"an array of shape {np.shape(bad[0])}"
            problems.append({"field": spec.name, "error": f"column '{spec.name}' holds {found} in a row, but tensor "
                                                          f"'{spec.name}' takes arrays of length {k}"})
            continue
        out[spec.name] = np.stack(list(column)) if len(column) else np.empty((0, k))
    if problems:
        raise SchemaError(problems)
    return out


def tensors_to_rows(tensors: Mapping[str, Any], schema: TensorSchema) -> pd.DataFrame:
    """Enforced named arrays as a frame: a column per tensor of ``schema`` (arrays for ``(-1, k)`` tensors)."""
    columns = {}
    for spec in schema.tensors:
        arr = tensors[spec.name]
        columns[spec.name] = pd.Series(list(arr) if arr.ndim == 2 else arr, dtype=object if arr.ndim == 2 else None)
    lengths = {len(c) for c in columns.values()}
    if len(lengths) > 1:
        raise ValueError(f"the model returned tensors of different lengths "
                         f"({', '.join(f'{n}: {len(c)}' for n, c in columns.items())}); each must have one "
                         f"element per input row")
    return pd.DataFrame(columns)
