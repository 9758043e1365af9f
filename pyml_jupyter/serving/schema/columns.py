"""Column conversion: one column of a DataFrame as :meth:`DataFrameSchema.enforce` delivers it.

The exact path: a Series per column, its missing-value mask, what its values are (pandas' type inference),
then the converter of the declared dtype. Each problem is raised as a ``_Problem`` naming the column and the
fix; :meth:`DataFrameSchema.enforce` collects them into one :class:`SchemaError`.
"""

from __future__ import annotations

import datetime as _datetime
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from .dtypes import (
    _FLOAT_DTYPES,
    _INT_DTYPES,
    _content,
    _infer_column,
    _int_range_error,
    _integral_values,
    _is_number,
    _prepare,
)
from .errors import _plural, _Problem, _short

if TYPE_CHECKING:
    from .dataframe import ColumnSpec


def _found(series: pd.Series, present: pd.Series, content: str, acceptable) -> str:
    """'str values such as 'abc'' – what a column holds, with an offending example."""
    example = next((v for v in present if not acceptable(v)), None)
    if example is None and len(present):
        example = present.iloc[0]
    if series.dtype == object:
        if content in ("mixed", "mixed-integer"):
            types = sorted({type(v).__name__ for v in present})[:4]
            what = f"a mix of {', '.join(types)} values"
        else:
            what = f"{type(example).__name__} values" if example is not None else f"{content} values"
    else:
        what = f"{series.dtype} values"
    return what + (f" such as {_short(example)}" if example is not None else "")


def _missing_problem(spec: ColumnSpec, series: pd.Series, n_missing: int) -> _Problem:
    because = ""
    if spec.dtype in _INT_DTYPES and series.dtype.kind == "f":
        because = (f" (it is {series.dtype}, probably because missing values turned its integers into "
                   f"floats)")
    return _Problem(f"column '{spec.name}' has {_plural(n_missing, 'missing value')} but is declared "
                    f"{spec.dtype} (not nullable){because}; declare it '{spec.dtype}?' or fill the "
                    f"missing values")


def _wrong_type(spec: ColumnSpec, series: pd.Series, present: pd.Series, content: str, acceptable,
                fix: str) -> _Problem:
    holds = _found(series, present, content, acceptable)
    actual = _infer_column(series)[0]
    also = f" or declare it '{actual}'" if actual != "object" else ""
    return _Problem(f"column '{spec.name}' is declared {spec.dtype} but holds {holds}; {fix}{also}")


def _to_int(spec: ColumnSpec, series: pd.Series, mask: np.ndarray, content: str) -> tuple[Any, str]:
    target = np.dtype(spec.dtype)
    present = series[~mask]
    source: Any  # the present values, as an int/float array or a list of exact Python ints
    if content == "float":
        floats = present.to_numpy(dtype=np.float64)
        integral = _integral_values(floats)
        if not integral.all():
            raise _Problem(f"column '{spec.name}' is declared {spec.dtype} but holds non-integral values "
                           f"such as {_short(floats[~integral][0])}; declare it 'float64' or round the values")
    if content in ("integer", "float") and series.dtype == object:
        source = [int(v) for v in present]  # exact, even beyond 2**53 (big JSON numbers)
        lo, hi = (min(source), max(source)) if source else (0, 0)
    elif content == "integer":
        source = present.to_numpy(dtype=getattr(series.dtype, "numpy_dtype", series.dtype))
        lo, hi = (int(source.min()), int(source.max())) if len(source) else (0, 0)
    elif content == "float":
        source = floats
        lo, hi = (float(source.min()), float(source.max())) if len(source) else (0.0, 0.0)
    elif content == "empty":
        source, lo, hi = [], 0, 0
    else:
        raise _wrong_type(spec, series, present, content, _is_number,
                          f"convert it with pd.to_numeric(df['{spec.name}'])")
    error = _int_range_error(spec.name, "column", target, lo, hi)
    if error:
        raise _Problem(error)
    out = np.zeros(len(series), dtype=target)
    out[~mask] = np.asarray(source, dtype=target)
    if spec.nullable:
        return pd.arrays.IntegerArray(out, mask.copy()), ""
    return out, ""


def _to_float(spec: ColumnSpec, series: pd.Series, mask: np.ndarray, content: str) -> tuple[Any, str]:
    target = np.dtype(spec.dtype)
    present = series[~mask]
    if content not in ("integer", "float", "empty"):
        raise _wrong_type(spec, series, present, content, _is_number,
                          f"convert it with pd.to_numeric(df['{spec.name}'])")
    values = present.to_numpy(dtype=np.float64) if len(present) else np.zeros(0)
    with np.errstate(over="ignore"):
        cast = values.astype(target)
    overflow = np.isfinite(values) & ~np.isfinite(cast)
    if overflow.any():
        raise _Problem(f"column '{spec.name}' has values too large for {spec.dtype} such as "
                       f"{_short(values[overflow][0])}; declare it 'float64'")
    out = np.full(len(series), np.nan, dtype=target)
    out[~mask] = cast
    return out, ""


def _to_bool(spec: ColumnSpec, series: pd.Series, mask: np.ndarray, content: str) -> tuple[Any, str]:
    present = series[~mask]
    if content == "bool":
        values = present.to_numpy(dtype=bool)
    elif content in ("integer", "float"):
        numbers_ = present.to_numpy(dtype=np.float64)
        bad = ~np.isin(numbers_, (0.0, 1.0))
        if bad.any():
            raise _Problem(f"column '{spec.name}' is declared bool but holds numbers other than 0 and 1 "
                           f"such as {_short(present.iloc[int(np.argmax(bad))])}; convert it to True/False")
        values = numbers_ == 1.0
    elif content == "empty":
        values = np.zeros(0, dtype=bool)
    else:
        raise _wrong_type(spec, series, present, content, lambda v: isinstance(v, (bool, np.bool_)),
                          "send True/False (or 0/1) values")
    out = np.zeros(len(series), dtype=bool)
    out[~mask] = values
    if spec.nullable:
        return pd.arrays.BooleanArray(out, mask.copy()), ""
    return out, ""


def _to_objects(spec: ColumnSpec, series: pd.Series, mask: np.ndarray, content: str) -> tuple[Any, str]:
    """string / binary: an object array of str (bytes), None where missing."""
    present = series[~mask]
    kind, py_type = ("string", str) if spec.dtype == "string" else ("bytes", bytes)
    if content not in (kind, "empty"):
        fix = (f"convert it with df['{spec.name}'].astype(str)" if kind == "string"
               else "send bytes values (base64 strings in JSON)")
        raise _wrong_type(spec, series, present, content, lambda v: isinstance(v, py_type), fix)
    out = np.empty(len(series), dtype=object)
    out[~mask] = [v if type(v) is py_type else py_type(v) for v in present.to_numpy(dtype=object)]
    return out, ""


def _is_datelike(v: Any) -> bool:
    return isinstance(v, (str, _datetime.date, np.datetime64))


def _to_datetime(spec: ColumnSpec, series: pd.Series, mask: np.ndarray, content: str) -> tuple[Any, str]:
    present = series[~mask]
    note = ""
    if series.dtype == object and content not in ("datetime", "string") and all(map(_is_datelike, present)):
        content = "datetime"  # e.g. Timestamps mixed with ISO strings
    try:
        if content == "datetime" and series.dtype != object:
            values = present.astype("datetime64[ns]")
        elif content == "datetimetz":
            values = present.dt.tz_convert("UTC").dt.tz_localize(None).astype("datetime64[ns]")
            note = " (converted to UTC)"
        elif content in ("datetime", "string"):
            values = pd.to_datetime(present, format="ISO8601", utc=True).dt.tz_localize(None)
        elif content == "empty":
            values = pd.Series([], dtype="datetime64[ns]")
        else:
            raise _wrong_type(spec, series, present, content, _is_datelike,
                              f"convert it with pd.to_datetime(df['{spec.name}']) or send ISO 8601 strings")
    except (ValueError, TypeError, OverflowError) as exc:
        raise _Problem(f"column '{spec.name}' is declared datetime but has values that are not ISO 8601 "
                       f"dates or are out of range ({str(exc).splitlines()[0]}); send ISO 8601 strings "
                       f"such as '2024-01-31T12:00:00'") from None
    out = np.full(len(series), np.datetime64("NaT"), dtype="datetime64[ns]")
    out[~mask] = values.to_numpy(dtype="datetime64[ns]")
    return out, note


def _to_object(spec: ColumnSpec, series: pd.Series, mask: np.ndarray, content: str) -> tuple[Any, str]:
    return series.to_numpy(dtype=object, copy=True), ""


_CONVERTERS = {"bool": _to_bool, "string": _to_objects, "binary": _to_objects, "datetime": _to_datetime,
               "object": _to_object, **{d: _to_int for d in _INT_DTYPES},
               **{d: _to_float for d in _FLOAT_DTYPES}}


def _convert_column(spec: ColumnSpec, column: pd.Series) -> tuple[pd.Series, str | None]:
    """The column as the schema delivers it, and a cast note (None when the dtype did not change)."""
    series = _prepare(column)
    mask = series.isna().to_numpy(dtype=bool)
    n_missing = int(mask.sum())
    if n_missing and not spec.nullable:
        raise _missing_problem(spec, series, n_missing)
    # a column without values (0 rows, all missing) holds nothing of a wrong type, whatever its dtype
    content = "empty" if n_missing == len(series) else _content(series, mask)
    values, suffix = _CONVERTERS[spec.dtype](spec, series, mask, content)
    result = pd.Series(values, dtype=values.dtype, copy=False)  # explicit dtype: no string inference
    before, after = str(column.dtype), str(result.dtype)
    return result, (f"{spec.name}: {before} -> {after}{suffix}" if before != after or suffix else None)


def _locate(df: pd.DataFrame, name: str) -> list[int]:
    return [i for i, c in enumerate(df.columns) if isinstance(c, str) and c == name]
