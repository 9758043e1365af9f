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
from .errors import _DATA, SchemaError, _Problem
from .fast import _fast_frame_from_json, _fast_json_rows
from .tensors import TensorSchema, _string_array, _tensor_from_objects

__all__ = ["dataframe_to_json", "dataframe_to_records", "dataframe_from_json", "tensors_to_json",
           "tensors_from_json"]


def _json_value(v: Any) -> Any:
    """A JSON-safe Python value: missing -> None, numpy scalars -> Python, datetimes -> ISO, bytes -> base64."""
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
        return None if v != v else v
    if isinstance(v, (_datetime.datetime, _datetime.date, _datetime.time)):
        return v.isoformat()
    if isinstance(v, _datetime.timedelta):
        return pd.Timedelta(v).isoformat()  # ISO 8601 duration, e.g. 'P0DT0H0M1S'
    if isinstance(v, numbers.Real):
        return float(v)  # Decimal, Fraction
    if isinstance(v, (bytes, bytearray)):
        return base64.b64encode(bytes(v)).decode("ascii")
    if isinstance(v, np.ndarray):
        return [_json_value(x) for x in v.tolist()]
    if isinstance(v, (list, tuple)):
        return [_json_value(x) for x in v]
    if isinstance(v, Mapping):
        return {str(k): _json_value(x) for k, x in v.items()}
    return str(v)  # anything else JSON cannot hold


def _column_to_json(series: pd.Series) -> list:
    dt = series.dtype
    if isinstance(dt, np.dtype) and dt.kind in "biu":
        return series.to_numpy().tolist()
    if isinstance(dt, np.dtype) and dt.kind == "f":
        values = series.to_numpy()
        return [None if x != x else x for x in values.tolist()]
    return [_json_value(v) for v in series.to_numpy(dtype=object)]


def dataframe_to_json(df: pd.DataFrame) -> dict:
    """``{"columns": [...], "data": [[...], ...]}``, JSON-safe (missing -> null, datetimes -> ISO 8601
    strings, bytes -> base64). The index is not written."""
    names = [c if isinstance(c, str) else _json_value(c) for c in df.columns]
    rows = _fast_json_rows(df)
    if rows is None:
        columns = [_column_to_json(series) for _, series in df.items()]
        rows = [list(row) for row in zip(*columns)] if columns else [[] for _ in range(len(df))]
    return {"columns": names, "data": rows}


def dataframe_to_records(df: pd.DataFrame) -> list[dict]:
    """``[{column: value}, ...]`` (pandas' ``records`` orientation), JSON-safe as :func:`dataframe_to_json`."""
    split = dataframe_to_json(df)
    names = split["columns"]
    return [dict(zip(names, row)) for row in split["data"]]


def _loads(obj: Any) -> Any:
    return json.loads(obj) if isinstance(obj, (str, bytes, bytearray)) else obj


def _json_columns(obj: Any) -> tuple[list[str], dict[str, list]]:
    """Column names and values from the split, records or columns JSON forms."""
    if isinstance(obj, Mapping) and len(obj) == 1 and ("dataframe_split" in obj or "dataframe_records" in obj):
        obj = next(iter(obj.values()))  # MLflow's scoring-server envelope
    bad = lambda error: SchemaError([{"field": _DATA, "error": error}])  # noqa: E731
    if isinstance(obj, Mapping) and "columns" in obj and "data" in obj and set(obj) <= {"columns", "data", "index"}:
        names, rows = list(obj["columns"]), obj["data"]
        if not isinstance(rows, list):
            raise bad("'data' must be a list of rows")
        for i, row in enumerate(rows):
            if not isinstance(row, (list, tuple)) or len(row) != len(names):
                raise bad(f"row {i} has {len(row) if isinstance(row, (list, tuple)) else 'no'} values but "
                          f"there are {len(names)} columns")
        return names, {n: [row[j] for row in rows] for j, n in enumerate(names)}
    if isinstance(obj, list):
        names: list[str] = []
        for i, record in enumerate(obj):
            if not isinstance(record, Mapping):
                raise bad(f"record {i} is a {type(record).__name__}; send a list of {{column: value}} objects")
            names.extend(k for k in record if k not in names)
        return names, {n: [record.get(n) for record in obj] for n in names}
    if isinstance(obj, Mapping):
        lengths = {len(v) if isinstance(v, list) else -1 for v in obj.values()}
        if -1 in lengths or len(lengths) > 1:
            raise bad("in the {column: [values]} form every value must be a list of the same length")
        return list(obj), {n: list(v) for n, v in obj.items()}
    raise bad(f"expected {{'columns': [...], 'data': [[...]]}}, a list of records or {{column: [values]}}, "
              f"got {type(obj).__name__}")


def dataframe_from_json(obj: Any, schema: DataFrameSchema | None = None) -> pd.DataFrame:
    """A DataFrame from JSON (parsed or text) in the split, records or columns form.

    With a schema the result is :meth:`~DataFrameSchema.enforce`d (extra columns dropped, exact dtypes;
    ``binary`` columns decoded from base64); without one, pandas infers the dtypes.
    """
    names, columns = _json_columns(_loads(obj))
    if schema is None:
        return pd.DataFrame({n: columns[n] for n in names}, columns=names)
    for spec in schema.columns:
        if spec.dtype == "binary" and spec.name in columns:
            try:
                columns[spec.name] = [base64.b64decode(v, validate=True) if isinstance(v, str) else v
                                      for v in columns[spec.name]]
            except ValueError:
                raise SchemaError([{"field": spec.name, "error": f"column '{spec.name}' is declared binary "
                                    f"but holds strings that are not base64"}]) from None
    n_rows = len(next(iter(columns.values()))) if columns else 0
    fast = _fast_frame_from_json(schema, columns, n_rows)
    if fast is not None:
        return fast
    frame = pd.DataFrame({n: pd.Series(columns[n], dtype=object) for n in names}, index=range(n_rows))
    return schema.enforce(frame).data


def tensors_to_json(tensors: Mapping[str, Any]) -> dict[str, list]:
    """``{name: nested lists}``, JSON-safe (NaN -> null)."""
    out = {}
    for name, value in tensors.items():
        arr = np.asarray(value)
        if arr.dtype.kind == "f" and np.isnan(arr).any():
            arr = np.where(np.isnan(arr), None, arr.astype(object))
        out[str(name)] = _json_value(arr.tolist()) if arr.dtype == object else arr.tolist()
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
            raise SchemaError([{"field": str(name), "error": f"tensor '{name}' is a ragged nested list; "
                                "every row must have the same length"}]) from None
        if arr.dtype == object and not _string_array(arr):
            try:
                arr = _tensor_from_objects(str(name), arr, "float64")
            except _Problem:
                pass
        out[str(name)] = arr
    return out
