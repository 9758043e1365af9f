"""The dtypes a schema accepts, and how a spec value or a column is read as one of them.

:data:`DTYPES` is the canonical list of every dtype either kind of schema accepts; each target's type table
(OpenAPI, the Open Inference Protocol, MLflow, Spark SQL) is keyed by it. :data:`DATAFRAME_DTYPES` are the
column dtypes, :data:`TENSOR_DTYPES` the tensor dtypes.
"""

from __future__ import annotations

import datetime as _datetime
import numbers
from typing import Any

import numpy as np
import pandas as pd

from .errors import _short, _spec_error

__all__ = ["DTYPES", "DATAFRAME_DTYPES", "TENSOR_DTYPES"]

_INT_DTYPES = ("int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64")
_FLOAT_DTYPES = ("float32", "float64")
DATAFRAME_DTYPES: tuple[str, ...] = (
    "bool", *_INT_DTYPES, *_FLOAT_DTYPES, "string", "datetime", "binary", "object",
)
TENSOR_DTYPES: tuple[str, ...] = ("bool", *_INT_DTYPES, "float16", *_FLOAT_DTYPES, "string")
# Every dtype a schema accepts (columns and tensors): the keys of each target's type table.
DTYPES: tuple[str, ...] = (
    "bool", *_INT_DTYPES, "float16", *_FLOAT_DTYPES, "string", "datetime", "binary", "object",
)

# Spellings accepted in specs besides the canonical names (pandas names such as "Int64" or "boolean" are
# understood too, through ``pandas.api.types.pandas_dtype``).
_COLUMN_ALIASES = {
    "str": "string", "text": "string", "int": "int64", "integer": "int64", "long": "int64",
    "float": "float64", "double": "float64", "bytes": "binary", "timestamp": "datetime",
    "datetime64": "datetime", "datetime64[ns]": "datetime",
}
_PY_TYPES = {
    bool: "bool", int: "int64", float: "float64", str: "string", bytes: "binary", object: "object",
    _datetime.datetime: "datetime",
}


# ---------------------------------------------------------------------------------- column dtypes


def _from_dtype(dt: Any) -> tuple[str, bool] | None:
    """Canonical (dtype, nullable) for a numpy/pandas dtype object, or None if it has no equivalent."""
    if isinstance(dt, pd.StringDtype):
        return "string", False
    if isinstance(dt, pd.BooleanDtype):
        return "bool", True
    if isinstance(dt, pd.DatetimeTZDtype):
        return "datetime", False
    if isinstance(dt, pd.api.extensions.ExtensionDtype):
        np_dt = getattr(dt, "numpy_dtype", None)
        if isinstance(dt, pd.ArrowDtype) and pd.api.types.is_string_dtype(dt):
            return "string", False
        if np_dt is not None and np_dt.kind in "biuf" and np_dt.name in DATAFRAME_DTYPES:
            return np_dt.name, True
        if np_dt is not None and np_dt.kind == "M":
            return "datetime", False
        return None
    if isinstance(dt, np.dtype):
        if dt.kind == "b":
            return "bool", False
        if dt.kind in "iuf":
            return (dt.name, False) if dt.name in DATAFRAME_DTYPES else None
        return {"M": ("datetime", False), "O": ("object", False), "U": ("string", False),
                "S": ("binary", False)}.get(dt.kind)
    return None


def _parse_column_dtype(name: str, value: Any) -> tuple[str, bool]:
    """(canonical dtype, nullable) from a spec value: ``"int64?"``, ``"Int64"``, ``np.int32``, ``str``..."""
    nullable = False
    if isinstance(value, str):
        text = value.strip()
        if text.endswith("?"):
            nullable, text = True, text[:-1].strip()
        if text in DATAFRAME_DTYPES:
            return text, nullable
        if text in _COLUMN_ALIASES:
            return _COLUMN_ALIASES[text], nullable
        value = text
    elif isinstance(value, type) and value in _PY_TYPES:
        return _PY_TYPES[value], nullable
    try:
        found = _from_dtype(pd.api.types.pandas_dtype(value))
    except (TypeError, ValueError):
        found = None
    if found is None:
        raise _spec_error(name, f"column '{name}' has unsupported dtype {value!r}; use one of "
                                f"{', '.join(DATAFRAME_DTYPES)} (add '?' to allow missing values)")
    return found[0], nullable or found[1]


def _is_present(value: Any) -> bool:
    return not (value is None or value is pd.NA or value is pd.NaT
                or (isinstance(value, (float, np.floating)) and value != value))


def _prepare(series: pd.Series) -> pd.Series:
    """Categorical and pyarrow-backed columns become object columns of their values (no dtype is lost)."""
    if isinstance(series.dtype, (pd.CategoricalDtype, pd.ArrowDtype)):
        return series.astype(object)
    return series


_OBJECT_CONTENT = {
    "string": "string", "bytes": "bytes", "boolean": "bool", "integer": "integer", "floating": "float",
    "mixed-integer-float": "float", "decimal": "float", "datetime": "datetime", "datetime64": "datetime",
    "date": "datetime",
}


def _content(series: pd.Series, mask: np.ndarray) -> str:
    """What a prepared column's non-missing values are: bool, integer, float, string, bytes, datetime,
    datetimetz, empty, or another label (mixed, timedelta...)."""
    dt = series.dtype
    if isinstance(dt, pd.StringDtype):
        return "string"
    if isinstance(dt, pd.DatetimeTZDtype):
        return "datetimetz"
    if dt == object:
        if mask.all():
            return "empty"
        inferred = pd.api.types.infer_dtype(series[~mask], skipna=True)
        return _OBJECT_CONTENT.get(inferred, inferred)
    if pd.api.types.is_bool_dtype(dt):
        return "bool"
    if pd.api.types.is_integer_dtype(dt):
        return "integer"
    if pd.api.types.is_float_dtype(dt):
        return "float"
    if getattr(dt, "kind", "") == "M":
        return "datetime"
    return str(dt)


def _infer_column(series: pd.Series) -> tuple[str, bool, bool]:
    """(canonical dtype, inferred nullable, has missing values) of a column."""
    if isinstance(series.dtype, pd.ArrowDtype) and _from_dtype(series.dtype):
        missing = bool(series.isna().any())
        return _from_dtype(series.dtype)[0], missing, missing
    series = _prepare(series)
    mask = series.isna().to_numpy(dtype=bool)
    missing = bool(mask.any())
    dt, content = series.dtype, _content(series, mask)
    extension = isinstance(dt, pd.api.extensions.ExtensionDtype)
    if content == "bool":
        return "bool", missing or isinstance(dt, pd.BooleanDtype), missing
    if content in ("integer", "float") and dt != object:
        name = (dt.numpy_dtype if extension else dt).name
        if content == "float" and name not in _FLOAT_DTYPES:
            name = "float32" if np.dtype(name).itemsize < 4 else "float64"
        return name, missing or extension, missing
    if content == "integer":
        values = [int(v) for v in series[~mask]]
        if min(values) >= np.iinfo(np.int64).min and max(values) <= np.iinfo(np.int64).max:
            return "int64", missing, missing
        if min(values) >= 0 and max(values) <= np.iinfo(np.uint64).max:
            return "uint64", missing, missing
        return "object", missing, missing
    simple = {"float": "float64", "string": "string", "bytes": "binary", "datetime": "datetime",
              "datetimetz": "datetime"}
    return simple.get(content, "object"), missing, missing


# ------------------------------------------------------------------- values (columns and tensors)


def _is_number(v: Any) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, (bool, np.bool_))


def _int_range_error(name: str, what: str, target: np.dtype, lo: Any, hi: Any) -> str | None:
    info = np.iinfo(target)
    # compare floats against exact powers of two (iinfo.max + 1), so float rounding cannot hide an overflow
    if lo < info.min or (hi > info.max if isinstance(hi, int) else hi >= float(int(info.max) + 1)):
        return (f"{what} '{name}' has values outside the {target.name} range (min {_short(lo)}, max "
                f"{_short(hi)}); declare a wider integer dtype or fix the values")
    return None


def _integral_values(values: np.ndarray) -> np.ndarray:
    """Boolean mask of the values of a float array that are finite integers."""
    return np.isfinite(values) & (values == np.floor(values))

