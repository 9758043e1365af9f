"""What the contract check does to a sample: copy, compare, slice and spoil it, for a DataFrame or a dict of arrays."""

from __future__ import annotations

import time
from typing import Any, Callable

import numpy as np
import pandas as pd

from ..serving.schema import DataFrameSchema, TensorSchema

__all__ = ["copy", "same_input", "n_rows", "slice_rows", "concat", "perturb_type", "drop_first", "timed"]


def copy(data: Any) -> Any:
    if isinstance(data, pd.DataFrame):
        return data.copy(deep=True)
    return {k: np.array(v, copy=True) for k, v in data.items()}


def same_input(a: Any, b: Any) -> bool:
    if isinstance(a, pd.DataFrame):
        return a.equals(b) and list(a.dtypes) == list(b.dtypes) and a.index.equals(b.index)
    return set(a) == set(b) and all(
        np.asarray(a[k]).dtype == np.asarray(b[k]).dtype and np.array_equal(a[k], b[k], equal_nan=a[k].dtype.kind in "fc")
        for k in a
    )


def n_rows(data: Any) -> int:
    if isinstance(data, pd.DataFrame):
        return len(data)
    firsts = [np.asarray(v).shape[0] for v in data.values() if np.ndim(v) > 0]
    return firsts[0] if firsts else 0


def slice_rows(data: Any, start: int, stop: int) -> Any:
    if isinstance(data, pd.DataFrame):
        return data.iloc[start:stop]
    return {k: np.asarray(v)[start:stop] for k, v in data.items()}


def concat(parts: list[Any]) -> Any:
    if isinstance(parts[0], pd.DataFrame):
        return pd.concat(parts)
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def perturb_type(data: Any, schema: DataFrameSchema | TensorSchema) -> tuple[Any, str] | None:
    """A copy of the sample with one column (tensor) given a wrong type, and that column's name."""
    if isinstance(schema, DataFrameSchema):
        for col in schema.columns:
            bad = data.copy()
            if col.dtype == "string":
                bad[col.name] = pd.Series([[1, 2]] * len(bad), index=bad.index, dtype=object)
            else:
                bad[col.name] = pd.Series(["not a number"] * len(bad), index=bad.index, dtype=object)
            return bad, col.name
        return None
    for spec in schema.tensors:
        bad = dict(data)
        bad[spec.name] = np.full(np.shape(data[spec.name]), "not a number", dtype=object)
        return bad, spec.name
    return None


def drop_first(data: Any, schema: DataFrameSchema | TensorSchema) -> tuple[Any, str] | None:
    names = schema.names
    if not names:
        return None
    if isinstance(data, pd.DataFrame):
        return data.drop(columns=[names[0]]), names[0]
    return {k: v for k, v in data.items() if k != names[0]}, names[0]


def timed(fn: Callable[[], Any], repeat: int, budget: float = float("inf")) -> list[float]:
    """The seconds of up to ``repeat`` calls of ``fn``, stopping once they took ``budget`` seconds (at least one)."""
    times: list[float] = []
    while len(times) < repeat and (not times or sum(times) < budget):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times
