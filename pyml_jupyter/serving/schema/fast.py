"""The fast paths: the very result of the exact path, built cheaply when the data already is as declared.

The exact path (:mod:`.columns`: a Series per column, its missing-value mask, pandas' type inference, then a
converter) costs ~0.2 ms per column whatever the size, which dominates a 1-row request. Most requests need none
of it: the values already are of the declared kind and none is missing. :func:`_fast_frame_from_json` and
:func:`_fast_enforce` recognise that case cheaply and build the very result the exact path would (same dtypes,
values, index and column order, no memory shared with the input); for anything else they return None and the
caller takes the exact path, which alone decides what is an error. :func:`_fast_json_rows` does the same for
the way out. tests/test_schema_fast_path.py checks that the two paths agree.

The fast path from JSON gives :class:`FrameColumns`: the enforced columns before they become a DataFrame. The
serving runtime keeps a request in that form until ``predict`` needs it, so that a batch of requests becomes
one DataFrame (building a DataFrame costs about as much as validating a 1-row request).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping

import numpy as np
import pandas as pd

from .base import Enforced
from .dtypes import _FLOAT_DTYPES, _INT_DTYPES, _int_range_error

if TYPE_CHECKING:
    from .dataframe import ColumnSpec, DataFrameSchema


def _infers_strings() -> bool:
    """Whether pandas turns object arrays of str into its string dtype on construction (pandas 3's default)."""
    try:
        return bool(pd.get_option("future.infer_string"))
    except (KeyError, pd.errors.OptionError):  # the option was retired: assume it is on
        return True


def _new_frame(arrays: dict[str, Any], index: pd.Index) -> pd.DataFrame:
    """A DataFrame of exactly these column arrays, without dtype inference, copied into consolidated blocks
    (so it shares no memory with the arrays, and models select and copy its columns faster)."""
    if _infers_strings():
        arrays = {name: pd.Series(a, index=index, dtype=object, copy=False) if a.dtype == object else a
                  for name, a in arrays.items()}
    return pd.DataFrame(arrays, index=index, copy=True)


_JSON_NUMBER = frozenset((float, int))


def _fast_column_from_json(spec: ColumnSpec, values: list) -> Any:
    """The column :meth:`DataFrameSchema.enforce` delivers for a non-empty list of parsed JSON values, when
    every value is of the declared kind and none is missing (floats or ints for a float column, ints in range
    for an int column, bools, str, bytes decoded from base64); None otherwise, and for datetime and object
    columns."""
    kinds = set(map(type, values))
    dtype = spec.dtype
    try:
        if dtype in _FLOAT_DTYPES and kinds <= _JSON_NUMBER:
            floats = np.array(values, dtype=np.float64)  # as the exact path: through float64, then narrowed
            if np.isnan(floats).any():
                return None
            if dtype == "float64":
                return floats
            with np.errstate(over="ignore"):
                narrow = floats.astype(dtype)
            return None if (np.isfinite(floats) & ~np.isfinite(narrow)).any() else narrow
    except OverflowError:  # an int too large for a float
        return None
    if dtype in _INT_DTYPES and kinds == {int}:
        target = np.dtype(dtype)
        if _int_range_error(spec.name, "column", target, min(values), max(values)):
            return None
        ints = np.array(values, dtype=target)
        return pd.arrays.IntegerArray(ints, np.zeros(len(ints), dtype=bool)) if spec.nullable else ints
    if dtype == "bool" and kinds == {bool}:
        flags = np.array(values, dtype=bool)
        return pd.arrays.BooleanArray(flags, np.zeros(len(flags), dtype=bool)) if spec.nullable else flags
    if (dtype == "string" and kinds == {str}) or (dtype == "binary" and kinds == {bytes}):
        objects = np.empty(len(values), dtype=object)
        objects[:] = values
        return objects
    return None


class FrameColumns:
    """A validated DataFrame input before it is a DataFrame: the schema's columns, in schema order, each an
    array of exactly the dtype ``enforce`` delivers, and ``rows`` rows (its index is ``RangeIndex(rows)``).

    :meth:`frame` builds the very DataFrame the fast path would have returned; :meth:`concat` joins the
    columns of several inputs so that a batch of them becomes one DataFrame."""

    __slots__ = ("arrays", "rows")

    def __init__(self, arrays: dict[str, Any], rows: int) -> None:
        self.arrays = arrays
        self.rows = rows

    def __len__(self) -> int:
        return self.rows

    def __repr__(self) -> str:
        return f"FrameColumns({list(self.arrays)!r}, rows={self.rows})"

    @property
    def index(self) -> pd.RangeIndex:
        return pd.RangeIndex(self.rows)

    def frame(self) -> pd.DataFrame:
        """The DataFrame: these columns copied into it, with a ``RangeIndex``."""
        return _new_frame(self.arrays, pd.RangeIndex(self.rows))

    @classmethod
    def concat(cls, parts: list["FrameColumns"]) -> "FrameColumns | None":
        """The rows of ``parts`` in order, when they have the same columns of the same numpy dtypes (else None:
        a pandas extension array, such as a nullable int column, is left to ``pd.concat``)."""
        names = list(parts[0].arrays)
        if any(list(part.arrays) != names for part in parts[1:]):
            return None
        merged = {}
        for name in names:
            arrays = [part.arrays[name] for part in parts]
            first = arrays[0]
            if not all(isinstance(a, np.ndarray) and a.dtype == first.dtype and a.ndim == 1 for a in arrays):
                return None
            merged[name] = np.concatenate(arrays)
        return cls(merged, sum(part.rows for part in parts))


def _fast_frame_from_json(schema: DataFrameSchema, columns: Mapping[Any, list], n_rows: int) -> FrameColumns | None:
    """What ``schema.enforce`` makes of the JSON columns (as :class:`FrameColumns`), when every schema column is
    there and takes the fast path of :func:`_fast_column_from_json` (extra columns are dropped, as enforce
    does); else None."""
    if not n_rows or not schema.columns:
        return None
    arrays = {}
    for spec in schema.columns:
        values = columns.get(spec.name)
        column = None if values is None else _fast_column_from_json(spec, values)
        if column is None:
            return None
        arrays[spec.name] = column
    return FrameColumns(arrays, n_rows)


def frame_columns_from_arrays(schema: DataFrameSchema, columns: Mapping[str, np.ndarray]) -> FrameColumns | None:
    """What ``schema.enforce`` makes of one-dimensional numpy columns (gRPC's raw tensor contents) when every
    schema column is there, all of one length, already of exactly the delivered dtype with no missing value:
    the columns copied, in schema order (extra columns are dropped, as enforce does); else None (the caller
    validates the values as JSON would)."""
    if not schema.columns:
        return None
    arrays = {}
    rows = None
    for spec in schema.columns:
        values = columns.get(spec.name)
        if not isinstance(values, np.ndarray) or values.ndim != 1 or not len(values):
            return None
        if rows is None:
            rows = len(values)
        if len(values) != rows or not _fast_column_ready(spec, values):
            return None
        arrays[spec.name] = values.copy()
    return FrameColumns(arrays, rows)


def _has_objects_of(values: np.ndarray, kind: type) -> bool:
    """Whether an object array holds only instances of exactly ``kind`` (no subclass, no missing value)."""
    return set(map(type, values.tolist())) == {kind}


def _fast_column_ready(spec: ColumnSpec, values: np.ndarray) -> bool:
    """Whether a numpy column already is exactly what :meth:`DataFrameSchema.enforce` delivers for ``spec``,
    with no missing value (so enforcing it is a copy)."""
    dt, dtype = values.dtype, spec.dtype
    if dtype in _FLOAT_DTYPES:
        return dt.name == dtype and not np.isnan(values).any()
    if dtype in _INT_DTYPES:
        return dt.name == dtype and not spec.nullable  # nullable ints are delivered as pandas IntN
    if dtype == "bool":
        return dt.kind == "b" and not spec.nullable  # nullable bools are delivered as pandas boolean
    if dtype == "datetime":
        return dt == np.dtype("datetime64[ns]") and not np.isnat(values).any()
    if dtype in ("string", "binary"):
        return dt == object and len(values) > 0 and _has_objects_of(values, str if dtype == "string" else bytes)
    return False


def _fast_enforce(schema: DataFrameSchema, df: pd.DataFrame) -> Enforced | None:
    """``schema.enforce(df)`` for a DataFrame whose schema columns each appear once and already have exactly
    the delivered numpy dtype with no missing values: the columns are copied, in schema order; else None."""
    if not schema.columns or not len(df):
        return None
    specs = {spec.name: spec for spec in schema.columns}
    found: dict[str, np.ndarray] = {}
    ignored = []
    for label, column in df.items():
        spec = specs.get(label) if isinstance(label, str) else None
        if spec is None:
            ignored.append(str(label))
            continue
        if spec.name in found or not isinstance(column.dtype, np.dtype):
            return None  # a duplicated column, or an extension dtype: the exact path decides
        values = column.to_numpy()
        if not _fast_column_ready(spec, values):
            return None
        found[spec.name] = values
    if len(found) < len(specs):
        return None
    return Enforced(_new_frame({name: found[name] for name in specs}, df.index.copy()), ignored, [])

_PLAIN_JSON = frozenset((str, int, float, bool))


def _fast_json_rows(df: pd.DataFrame) -> list[list] | None:
    """The rows of :func:`dataframe_to_json` when every cell, as a Python object, already is a str, int, bool
    or float and none is missing (e.g. a model's float and int outputs), taken in one conversion rather than
    a Series per column; None otherwise."""
    cells = df.to_numpy(dtype=object)
    if not set(map(type, cells.ravel().tolist())) <= _PLAIN_JSON or pd.isna(cells).any():
        return None
    return cells.tolist()
