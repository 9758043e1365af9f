"""The JSON codec: DataFrames and named tensors to and from JSON-safe values.

DataFrames are written in the split form ``{"columns", "data"}`` and read from the split, records or columns
forms (and MLflow's scoring envelopes); tensors are ``{name: nested lists}``. Read with a schema, the data is
enforced by it, so what comes out is exactly what ``enforce`` delivers.
"""

from __future__ import annotations

import base64
import datetime as _datetime
import json
import numbers
from typing import Any, Mapping

import numpy as np
import pandas as pd

from .dataframe import DataFrameSchema
from .errors import _DATA, RECTANGULAR, ROW_WIDTH, SAME_LENGTH, SchemaError, _Problem, problem
from .fast import FrameColumns, _fast_frame_from_json, _fast_json_rows
from .tensors import TensorSchema, _string_array, _tensor_from_objects

__all__ = ["dataframe_to_json", "dataframe_to_records", "dataframe_from_json", "tensors_to_json",
           "tensors_from_json"]


def _json_value(v: Any, allow_nan: bool = False) -> Any:
    """A JSON-safe Python value: missing -> None, numpy scalars -> Python, datetimes -> ISO, bytes -> base64;
    a float NaN -> None, unless ``allow_nan`` (for a writer that writes ``NaN``)."""
    if v is None or v is pd.NA or v is pd.NaT:
        return None
    if isinstance(v, np.generic):
        if isinstance(v, np.datetime64):
            return None if np.isnat(v) else pd.Timestamp(v).isoformat()
        if isinstance(v, np.timedelta64):
            return None if np.isnat(v) else pd.Timedelta(v).isoformat()
        v = v.item()
    if isinstance(v, (str, bool, int)):
        return v
    if isinstance(v, float):
        return v if allow_nan or v == v else None
    if isinstance(v, (_datetime.datetime, _datetime.date, _datetime.time)):
        return v.isoformat()
    if isinstance(v, _datetime.timedelta):
        return pd.Timedelta(v).isoformat()  # ISO 8601 duration, e.g. 'P0DT0H0M1S'
    if isinstance(v, numbers.Real):
        return float(v)  # Decimal, Fraction
    if isinstance(v, (bytes, bytearray)):
        return base64.b64encode(bytes(v)).decode("ascii")
    if isinstance(v, np.ndarray):
        return [_json_value(x, allow_nan) for x in v.tolist()]
    if isinstance(v, (list, tuple)):
        return [_json_value(x, allow_nan) for x in v]
    if isinstance(v, Mapping):
        return {str(k): _json_value(x, allow_nan) for k, x in v.items()}
    return str(v)  # anything else JSON cannot hold


def _column_to_json(series: pd.Series, allow_nan: bool = False) -> list:
    dt = series.dtype
    if isinstance(dt, np.dtype) and dt.kind in "biu":
        return series.to_numpy().tolist()
    if isinstance(dt, np.dtype) and dt.kind == "f":
        values = series.to_numpy().tolist()
        return values if allow_nan else [None if x != x else x for x in values]
    return [_json_value(v, allow_nan) for v in series.to_numpy(dtype=object)]


def dataframe_to_json(df: pd.DataFrame, *, allow_nan: bool = False) -> dict:
    """``{"columns": [...], "data": [[...], ...]}``, JSON-safe (missing -> null, datetimes -> ISO 8601
    strings, bytes -> base64). The index is not written. Float NaN is missing (null) unless ``allow_nan``
    keeps it a float, for a writer that writes ``NaN`` as MLflow's scoring server does; infinities are
    always kept."""
    names = [c if isinstance(c, str) else _json_value(c) for c in df.columns]
    rows = _fast_json_rows(df)
    if rows is None:
        columns = [_column_to_json(series, allow_nan) for _, series in df.items()]
        rows = [list(row) for row in zip(*columns)] if columns else [[] for _ in range(len(df))]
    return {"columns": names, "data": rows}


def dataframe_to_records(df: pd.DataFrame, *, allow_nan: bool = False) -> list[dict]:
    """``[{column: value}, ...]`` (pandas' ``records`` orientation), JSON-safe as :func:`dataframe_to_json`."""
    split = dataframe_to_json(df, allow_nan=allow_nan)
    names = split["columns"]
    return [dict(zip(names, row)) for row in split["data"]]


def _loads(obj: Any) -> Any:
    return json.loads(obj) if isinstance(obj, (str, bytes, bytearray)) else obj


def _json_columns(obj: Any, wanted: list[str] | None = None) -> tuple[list[str], dict[str, list], int]:
    """Column names, values and the row count from the split, records or columns JSON forms.

    With ``wanted`` (the schema's names) only those columns are built, in one pass over the rows each: other
    keys and columns are skipped, never gathered, so the cost is linear in the body."""
    if isinstance(obj, Mapping) and len(obj) == 1 and ("dataframe_split" in obj or "dataframe_records" in obj):
        obj = next(iter(obj.values()))  # MLflow's scoring-server envelope
    bad = lambda error, rule=None: SchemaError([problem(_DATA, error, rule)])  # noqa: E731
    if isinstance(obj, Mapping) and "columns" in obj and "data" in obj and set(obj) <= {"columns", "data", "index"}:
        names, rows = list(obj["columns"]), obj["data"]
        if not isinstance(rows, list):
            raise bad("'data' must be a list of rows")
        width = len(names)
        for i, row in enumerate(rows):
            if not isinstance(row, (list, tuple)):
                raise bad(f"row {i} is a {type(row).__name__}; each row must be a list of values")
            if len(row) != width:
                raise bad(f"row {i} has {len(row)} values but there are {width} columns", ROW_WIDTH)
        position = {n: j for j, n in enumerate(names)}  # a repeated name: its last column, as a dict would
        if wanted is not None:
            position = {n: position[n] for n in wanted if n in position}
        return list(position), {n: [row[j] for row in rows] for n, j in position.items()}, len(rows)
    if isinstance(obj, list):
        for i, record in enumerate(obj):
            if not isinstance(record, (dict, Mapping)):
                raise bad(f"record {i} is a {type(record).__name__}; send a list of {{column: value}} objects")
        if wanted is None:
            names = list(dict.fromkeys(k for record in obj for k in record))
            return names, {n: [record.get(n) for record in obj] for n in names}, len(obj)
        columns = {}
        for n in wanted:
            values = [record.get(n) for record in obj]
            # zero records hold every column (vacuously); otherwise a column needs a record naming it
            if not obj or any(v is not None for v in values) or any(n in record for record in obj):
                columns[n] = values
        return list(columns), columns, len(obj)
    if isinstance(obj, Mapping):
        lengths = {len(v) if isinstance(v, list) else -1 for v in obj.values()}
        if -1 in lengths or len(lengths) > 1:
            raise bad("in the {column: [values]} form every value must be a list of the same length",
                      SAME_LENGTH)
        names = list(obj) if wanted is None else [n for n in wanted if n in obj]
        return names, {n: list(obj[n]) for n in names}, lengths.pop() if lengths else 0
    raise bad(f"expected {{'columns': [...], 'data': [[...]]}}, a list of records or {{column: [values]}}, "
              f"got {type(obj).__name__}")


def dataframe_from_json(obj: Any, schema: DataFrameSchema | None = None, *,
                        as_columns: bool = False) -> pd.DataFrame | FrameColumns:
    """A DataFrame from JSON (parsed or text) in the split, records or columns form.

    With a schema the result is :meth:`~DataFrameSchema.enforce`d (extra columns dropped, exact dtypes;
    ``binary`` columns decoded from base64; an omitted nullable column is all missing) and only the schema's
    columns are ever built; without one, pandas infers the dtypes. With ``as_columns`` (the serving runtime),
    input that takes the fast path comes back as :class:`FrameColumns`, whose ``frame()`` is that DataFrame.
    """
    names, columns, n_rows = _json_columns(_loads(obj), None if schema is None else schema.names)
    if schema is None:
        return pd.DataFrame({n: columns[n] for n in names}, columns=names)
    for spec in schema.columns:  # JSON may omit a nullable column (as a record omits a key): all missing
        if spec.nullable and spec.name not in columns:
            columns[spec.name] = [None] * n_rows
            names.append(spec.name)
    for spec in schema.columns:
        if spec.dtype == "binary" and spec.name in columns:
            try:
                columns[spec.name] = [base64.b64decode(v, validate=True) if isinstance(v, str) else v
                                      for v in columns[spec.name]]
            except ValueError:
                raise SchemaError([{"field": spec.name, "error": f"column '{spec.name}' is declared binary "
                                    f"but holds strings that are not base64"}]) from None
    fast = _fast_frame_from_json(schema, columns, n_rows)
    if fast is not None:
        return fast if as_columns else fast.frame()
    frame = pd.DataFrame({n: pd.Series(columns[n], dtype=object) for n in names}, index=range(n_rows))
    return schema.enforce(frame).data


def tensors_to_json(tensors: Mapping[str, Any], *, allow_nan: bool = False) -> dict[str, list]:
    """``{name: nested lists}``, JSON-safe (NaN -> null, unless ``allow_nan`` keeps it, as
    :func:`dataframe_to_json`)."""
    out = {}
    for name, value in tensors.items():
        arr = np.asarray(value)
        if not allow_nan and arr.dtype.kind == "f" and np.isnan(arr).any():
            arr = np.where(np.isnan(arr), None, arr.astype(object))
        out[str(name)] = _json_value(arr.tolist(), allow_nan) if arr.dtype == object else arr.tolist()
    return out


def tensors_from_json(obj: Any, schema: TensorSchema | None = None) -> dict[str, np.ndarray]:
    """Named arrays from ``{name: nested lists}`` (parsed or text; MLflow's ``{"inputs": ...}`` envelope is
    accepted). With a schema the arrays are :meth:`~TensorSchema.enforce`d; without one, null -> NaN."""
    obj = _loads(obj)
    if (isinstance(obj, Mapping) and set(obj) == {"inputs"}
            and (schema is None or "inputs" not in schema.names)):
        obj = obj["inputs"]
    if schema is not None:
        return schema.enforce(obj).data
    if not isinstance(obj, Mapping):
        raise SchemaError([{"field": _DATA, "error": f"expected {{name: nested lists}}, got {type(obj).__name__}"}])
    out = {}
    for name, value in obj.items():
        try:
            arr = np.asarray(value)
        except ValueError:
            raise SchemaError([problem(name, f"tensor '{name}' is a ragged nested list; every row must have the "
                                             f"same length", RECTANGULAR)]) from None
        if arr.dtype == object and not _string_array(arr):
            try:
                arr = _tensor_from_objects(str(name), arr, "float64")
            except _Problem:
                pass
        out[str(name)] = arr
    return out
