"""Input and output schemas: the one module that says what data a model accepts and returns.

The notebook contract check, the served container, the MLflow pyfunc wrapper and the Spark job all call
:meth:`DataFrameSchema.enforce` / :meth:`TensorSchema.enforce` before ``predict`` runs, so they can never
disagree about what is valid. Problems are collected across all columns (tensors) and raised once, as a
:class:`SchemaError` that names every field and says how to fix it.

DataFrame dtypes (a ``?`` suffix, or ``nullable=True``, allows missing values) and what ``predict`` receives
after :meth:`DataFrameSchema.enforce`:

===========  ==========================================  ===========================================
declared     delivered (not nullable)                    delivered (nullable, ``?``)
===========  ==========================================  ===========================================
``intN``     numpy ``intN`` / ``uintN``                  pandas ``IntN`` / ``UIntN``, ``pd.NA`` missing
``floatN``   numpy ``floatN``                            numpy ``floatN``, ``NaN`` missing
``bool``     numpy ``bool``                              pandas ``boolean``, ``pd.NA`` missing
``string``   ``object`` holding Python ``str``           same, ``None`` missing
``datetime`` numpy ``datetime64[ns]`` (tz-naive)         same, ``NaT`` missing
``binary``   ``object`` holding ``bytes``                same, ``None`` missing
``object``   ``object``, values passed through           same
===========  ==========================================  ===========================================

Columns come out in schema order, extra columns are dropped (reported in :attr:`Enforced.ignored`), the
input's index is kept, and the input is never mutated (the result never shares memory with it).

Tensor dtypes are numpy names (``bool``, ``intN``, ``uintN``, ``float16/32/64``) plus ``string`` (an
``object`` array of ``str``); shapes use ``None`` for a variable dimension.

This module is part of the serving runtime: it imports only the standard library, numpy and pandas.
"""

from __future__ import annotations

import base64
import datetime as _datetime
import json
import numbers
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator, Mapping, Union

import numpy as np
import pandas as pd

__all__ = [
    "SchemaError",
    "ColumnSpec",
    "DataFrameSchema",
    "TensorSpec",
    "TensorSchema",
    "Enforced",
    "Schema",
    "DATAFRAME_DTYPES",
    "TENSOR_DTYPES",
    "schema_from_dict",
    "schema_from_spec",
    "infer_schema",
    "dataframe_to_json",
    "dataframe_to_records",
    "dataframe_from_json",
    "tensors_to_json",
    "tensors_from_json",
]

_INT_DTYPES = ("int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64")
_FLOAT_DTYPES = ("float32", "float64")
DATAFRAME_DTYPES: tuple[str, ...] = (
    "bool", *_INT_DTYPES, *_FLOAT_DTYPES, "string", "datetime", "binary", "object",
)
TENSOR_DTYPES: tuple[str, ...] = ("bool", *_INT_DTYPES, "float16", *_FLOAT_DTYPES, "string")

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
_DATA = "<data>"  # the ``field`` of a problem about the data as a whole


# --------------------------------------------------------------------------------------------- errors


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


# ------------------------------------------------------------------------------ column converters


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


# ------------------------------------------------------------------------------------ fast paths
#
# The exact path above (a Series per column, its missing-value mask, pandas' type inference, then a converter)
# costs ~0.2 ms per column whatever the size, which dominates a 1-row request. Most requests need none of it:
# the values already are of the declared kind and none is missing. _fast_frame_from_json and _fast_enforce
# below recognise that case cheaply and build the very result the exact path would (same dtypes, values, index
# and column order, no memory shared with the input); for anything else they return None and the caller takes
# the exact path, which alone decides what is an error. (_fast_json_rows does the same for the way out.)
# tests/test_schema_fast_path.py checks that the two paths agree.


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


def _fast_frame_from_json(schema: DataFrameSchema, columns: Mapping[Any, list], n_rows: int) -> pd.DataFrame | None:
    """What ``schema.enforce`` makes of the JSON columns, when every schema column is there and takes the
    fast path of :func:`_fast_column_from_json` (extra columns are dropped, as enforce does); else None."""
    if not n_rows or not schema.columns:
        return None
    arrays = {}
    for spec in schema.columns:
        values = columns.get(spec.name)
        column = None if values is None else _fast_column_from_json(spec, values)
        if column is None:
            return None
        arrays[spec.name] = column
    return _new_frame(arrays, pd.RangeIndex(n_rows))


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


# ------------------------------------------------------------------------------------ value objects


@dataclass
class Enforced:
    """The result of ``enforce``: the coerced data, the fields dropped, and notes on the casts made."""

    data: Any
    ignored: list[str] = field(default_factory=list)
    casts: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class ColumnSpec:
    """One DataFrame column: name, canonical dtype and whether missing values are allowed.

    ``dtype`` is normalised on construction (``"str"`` -> ``"string"``, ``"int64?"`` -> nullable int64).
    """

    name: str
    dtype: str
    nullable: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.name, str):
            raise _spec_error(str(self.name), f"column name {self.name!r} is not a string; "
                                              f"rename the columns with df.columns = df.columns.astype(str)")
        dtype, nullable = _parse_column_dtype(self.name, self.dtype)
        object.__setattr__(self, "dtype", dtype)
        object.__setattr__(self, "nullable", bool(self.nullable) or nullable)

    @property
    def declared(self) -> str:
        """The dtype as written in a spec: ``"int64"`` or ``"int64?"``."""
        return self.dtype + ("?" if self.nullable else "")

    def to_dict(self) -> dict:
        return {"name": self.name, "dtype": self.dtype, "nullable": self.nullable}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "ColumnSpec":
        return cls(d["name"], d["dtype"], bool(d.get("nullable", False)))


class DataFrameSchema:
    """The columns a DataFrame must have, in order. Build it with :meth:`from_spec` or :meth:`infer`."""

    kind = "dataframe"

    def __init__(self, columns: Iterable[ColumnSpec] | Mapping[str, Any]) -> None:
        if isinstance(columns, Mapping):
            columns = DataFrameSchema.from_spec(columns).columns
        columns = tuple(columns)
        for c in columns:
            if not isinstance(c, ColumnSpec):
                raise _spec_error(str(c), f"expected a ColumnSpec, got {type(c).__name__} {_short(c)}")
        seen: set[str] = set()
        for c in columns:
            if c.name in seen:
                raise _spec_error(c.name, f"column '{c.name}' is declared twice")
            seen.add(c.name)
        self.columns: tuple[ColumnSpec, ...] = columns

    # -- construction
    @classmethod
    def from_spec(cls, spec: Any) -> "DataFrameSchema":
        """From a schema, a mapping ``{"age": "int64", "city": "string?"}`` (values may also be numpy/pandas
        dtypes, Python types or ColumnSpecs), a list of ColumnSpecs, or a :meth:`to_dict` dict."""
        if isinstance(spec, DataFrameSchema):
            return spec
        if isinstance(spec, Mapping):
            if spec.get("type") == "dataframe" and isinstance(spec.get("columns"), list):
                return cls.from_dict(spec)
            columns = []
            for name, value in spec.items():
                if isinstance(value, ColumnSpec):
                    if value.name != name:
                        raise _spec_error(str(name), f"column '{name}' maps to a ColumnSpec named "
                                                     f"'{value.name}'")
                    columns.append(value)
                else:
                    columns.append(ColumnSpec(name, value))
            return cls(columns)
        if isinstance(spec, (list, tuple)) and all(isinstance(c, ColumnSpec) for c in spec):
            return cls(spec)
        raise _spec_error(_DATA, f"a DataFrame schema must be a mapping of column name to dtype such as "
                                 f"{{'age': 'int64', 'city': 'string?'}}, got {type(spec).__name__}")

    @classmethod
    def infer(cls, df: pd.DataFrame) -> "DataFrameSchema":
        """The schema of a DataFrame. Nullable where values are missing, and always for pandas' nullable
        dtypes (``Int64``, ``boolean``, ``Float64``)."""
        if not isinstance(df, pd.DataFrame):
            raise SchemaError([{"field": _DATA, "error": f"expected a pandas DataFrame, got "
                                                          f"{type(df).__name__}"}])
        problems, columns = [], []
        for name in df.columns:
            if not isinstance(name, str):
                problems.append({"field": str(name), "error": f"column name {name!r} is not a string; "
                                 f"rename the columns with df.columns = df.columns.astype(str)"})
        if problems:
            raise SchemaError(problems, summary="Cannot infer a schema")
        for i, name in enumerate(df.columns):
            dtype, nullable, _ = _infer_column(df.iloc[:, i])
            columns.append(ColumnSpec(name, dtype, nullable))
        return cls(columns)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "DataFrameSchema":
        if d.get("type", "dataframe") != "dataframe":
            raise _spec_error(_DATA, f"not a DataFrame schema: type {d.get('type')!r}")
        return cls(ColumnSpec.from_dict(c) for c in d["columns"])

    def to_dict(self) -> dict:
        return {"type": "dataframe", "columns": [c.to_dict() for c in self.columns]}

    # -- use
    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]

    def enforce(self, df: pd.DataFrame) -> Enforced:
        """A copy of ``df`` with exactly the schema's columns, in order, with the schema's dtypes.

        Raises :class:`SchemaError` listing every problem. Never mutates ``df``; keeps its index.
        """
        if not isinstance(df, pd.DataFrame):
            raise SchemaError([{"field": _DATA, "error": f"expected a pandas DataFrame, got "
                                                          f"{type(df).__name__}"}])
        fast = _fast_enforce(self, df)
        if fast is not None:
            return fast
        problems: list[dict] = []
        casts: list[str] = []
        out: dict[str, pd.Series] = {}
        for spec in self.columns:
            where = _locate(df, spec.name)
            if not where:
                problems.append({"field": spec.name,
                                 "error": f"missing column '{spec.name}' ({spec.declared})"})
                continue
            if len(where) > 1:
                problems.append({"field": spec.name, "error": f"column '{spec.name}' appears "
                                 f"{len(where)} times; drop the duplicates"})
                continue
            try:
                out[spec.name], note = _convert_column(spec, df.iloc[:, where[0]])
            except _Problem as problem:
                problems.append({"field": spec.name, "error": str(problem)})
                continue
            if note:
                casts.append(note)
        if problems:
            raise SchemaError(problems)
        wanted = set(self.names)
        ignored = [str(c) for c in df.columns if not (isinstance(c, str) and c in wanted)]
        if out:
            result = pd.DataFrame(out, copy=False)
            result.index = df.index.copy()
        else:
            result = pd.DataFrame(index=df.index.copy())
        return Enforced(result, ignored, casts)

    def problems(self, df: Any) -> list[dict]:
        """Strict check without coercion (for a model's output): [] means ``df`` conforms.

        A column conforms when its values are of the declared dtype (same width; any pandas representation
        of it, e.g. ``Int64`` or pandas' string dtype) and it has no missing values unless nullable. Missing
        and extra columns are problems; column order is not. A column without values (0 rows, or all missing)
        of dtype ``object`` or ``float64`` (what pandas makes of ``[]`` and all-``None`` lists) conforms to
        any dtype.
        """
        if not isinstance(df, pd.DataFrame):
            return [{"field": _DATA, "error": f"expected a pandas DataFrame, got {type(df).__name__}"}]
        problems = []
        for spec in self.columns:
            where = _locate(df, spec.name)
            if len(where) != 1:
                error = (f"missing column '{spec.name}' ({spec.declared})" if not where
                         else f"column '{spec.name}' appears {len(where)} times")
                problems.append({"field": spec.name, "error": error})
                continue
            series = df.iloc[:, where[0]]
            dtype, _, missing = _infer_column(series)
            no_values = series.dtype in (object, np.float64) and bool(series.isna().all())
            if spec.dtype != "object" and dtype != spec.dtype and not no_values:
                problems.append({"field": spec.name, "error": f"column '{spec.name}' is {dtype} "
                                 f"({series.dtype}) but the schema declares {spec.declared}"})
            elif missing and not spec.nullable:
                problems.append({"field": spec.name, "error": f"column '{spec.name}' has missing values "
                                 f"but the schema declares {spec.dtype} (not nullable); declare it "
                                 f"'{spec.dtype}?'"})
        wanted = set(self.names)
        for c in df.columns:
            if not (isinstance(c, str) and c in wanted):
                problems.append({"field": str(c), "error": f"column '{c}' is not in the schema"})
        return problems

    # -- value object
    def __iter__(self) -> Iterator[ColumnSpec]:
        return iter(self.columns)

    def __len__(self) -> int:
        return len(self.columns)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, DataFrameSchema) and self.columns == other.columns

    def __hash__(self) -> int:
        return hash((self.kind, self.columns))

    def __repr__(self) -> str:
        return f"DataFrameSchema({ {c.name: c.declared for c in self.columns} !r})"

    def _repr_html_(self) -> str:
        rows = "".join(f"<tr><td>{_html(c.name)}</td><td><code>{c.declared}</code></td></tr>"
                       for c in self.columns)
        return f"<table><tr><th>column</th><th>dtype</th></tr>{rows}</table>"


def _html(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


# ----------------------------------------------------------------------------------------- tensors


def _parse_tensor_dtype(name: str, value: Any) -> str:
    if isinstance(value, str) and value.strip() in ("string", "str"):
        return "string"
    try:
        dt = np.dtype(value)
    except TypeError:
        dt = None
    if dt is not None and dt.kind == "U":
        return "string"
    if dt is None or dt.name not in TENSOR_DTYPES:
        raise _spec_error(name, f"tensor '{name}' has unsupported dtype {value!r}; use one of "
                                f"{', '.join(TENSOR_DTYPES)}")
    return dt.name


def _parse_shape(name: str, shape: Any) -> tuple[int | None, ...]:
    if isinstance(shape, (int, np.integer)) or shape is None:
        shape = (shape,)
    try:
        dims = tuple(None if d is None or int(d) == -1 else int(d) for d in shape)
    except (TypeError, ValueError):
        dims = None
    if dims is None or any(d is not None and d < 0 for d in dims):
        raise _spec_error(name, f"tensor '{name}' has invalid shape {shape!r}; use a tuple of sizes "
                                f"with -1 or None for variable dimensions, e.g. (-1, 28, 28)")
    return dims


def _shape_matches(declared: tuple[int | None, ...], shape: tuple[int, ...]) -> bool:
    """Same rank, and every fixed dimension equal."""
    return len(declared) == len(shape) and all(d is None or d == a for d, a in zip(declared, shape))


def _shape_text(shape: tuple) -> str:
    return "(" + ", ".join("None" if d is None else str(d) for d in shape) + ("," if len(shape) == 1 else "") + ")"


@dataclass(frozen=True)
class TensorSpec:
    """One named tensor: numpy dtype name (or ``"string"``) and shape, ``None`` for variable dimensions."""

    name: str
    dtype: str
    shape: tuple[int | None, ...]

    def __post_init__(self) -> None:
        if not isinstance(self.name, str):
            raise _spec_error(str(self.name), f"tensor name {self.name!r} is not a string")
        object.__setattr__(self, "dtype", _parse_tensor_dtype(self.name, self.dtype))
        object.__setattr__(self, "shape", _parse_shape(self.name, self.shape))

    def to_dict(self) -> dict:
        return {"name": self.name, "dtype": self.dtype, "shape": list(self.shape)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "TensorSpec":
        return cls(d["name"], d["dtype"], tuple(d["shape"]))

    def describe(self) -> str:
        return f"{self.dtype}, shape {_shape_text(self.shape)}"


def _string_array(arr: np.ndarray) -> bool:
    return arr.dtype.kind == "U" or (arr.dtype == object and all(isinstance(v, str) for v in arr.flat))


def _tensor_from_objects(name: str, arr: np.ndarray, dtype: str) -> np.ndarray:
    """An object array (nested JSON lists with None, Python numbers) as a numeric array."""
    flat = list(arr.flat)
    missing = [not _is_present(v) for v in flat]
    present = [v for v, m in zip(flat, missing) if not m]
    if any(missing) and not dtype.startswith("float"):
        raise _Problem(f"tensor '{name}' has missing values (None/NaN) but is declared {dtype}; "
                       f"declare a float dtype or fill them")
    if dtype == "bool" and all(isinstance(v, (bool, np.bool_)) for v in present):
        return arr.astype(bool)
    if not all(_is_number(v) for v in present):
        bad = next(v for v in present if not _is_number(v))
        raise _Problem(f"tensor '{name}' is declared {dtype} but holds {type(bad).__name__} values such "
                       f"as {_short(bad)}; send numbers")
    if all(isinstance(v, (int, np.integer)) for v in present) and not any(missing):
        ints = [int(v) for v in flat]
        lo, hi = (min(ints), max(ints)) if ints else (0, 0)
        kind = np.int64 if lo >= np.iinfo(np.int64).min and hi <= np.iinfo(np.int64).max else np.uint64
        if lo < 0 and kind is np.uint64:
            raise _Problem(f"tensor '{name}' has integers too large for any integer dtype")
        return np.array(ints, dtype=kind).reshape(arr.shape)
    return np.array([float(v) if not m else np.nan for v, m in zip(flat, missing)],
                    dtype=np.float64).reshape(arr.shape)


def _convert_tensor(spec: TensorSpec, value: Any) -> tuple[np.ndarray, str | None, list[str]]:
    """(array as declared, cast note, problems)."""
    source = "list" if not isinstance(value, np.ndarray) else str(value.dtype)
    try:
        arr = np.asarray(value)
    except ValueError:
        return value, None, [f"tensor '{spec.name}' is a ragged nested list; every row must have the "
                             f"same length"]
    errors = []
    if not _shape_matches(spec.shape, arr.shape):
        errors.append(f"tensor '{spec.name}' has shape {_shape_text(arr.shape)} but the schema declares "
                      f"{_shape_text(spec.shape)}")
    try:
        out = _cast_tensor(spec, arr)
    except _Problem as problem:
        return arr, None, errors + [str(problem)]
    if errors:
        return arr, None, errors
    note = f"{spec.name}: {source} -> {spec.dtype}" if source != out.dtype.name else None
    if spec.dtype == "string" and source in ("object",):
        note = None
    return out, note, []


def _holds(arr: np.ndarray) -> str:
    return {"U": "str", "S": "bytes", "O": "object"}.get(arr.dtype.kind, arr.dtype.name)


def _cast_tensor(spec: TensorSpec, arr: np.ndarray) -> np.ndarray:
    name, dtype = spec.name, spec.dtype
    if dtype == "string":
        if not _string_array(arr):
            raise _Problem(f"tensor '{name}' is declared string but holds {_holds(arr)} values; send strings")
        out = np.empty(arr.shape, dtype=object)
        out.flat[:] = [str(v) for v in arr.flat] if arr.size else []
        return out
    if arr.dtype == object:
        arr = _tensor_from_objects(name, arr, dtype)
    target = np.dtype(dtype)
    kind = arr.dtype.kind
    if kind not in "biuf":
        raise _Problem(f"tensor '{name}' is declared {dtype} but holds {_holds(arr)} values; send numbers")
    if target.kind == "b":
        if kind != "b":
            bad = ~np.isin(arr, (0, 1))
            if bad.any():
                raise _Problem(f"tensor '{name}' is declared bool but holds numbers other than 0 and 1 "
                               f"such as {_short(arr[bad].flat[0])}")
        return arr.astype(bool)
    if kind == "b":
        raise _Problem(f"tensor '{name}' is declared {dtype} but holds bool values; convert them with "
                       f".astype('{dtype}')")
    if target.kind in "iu":
        if kind == "f":
            if np.isnan(arr).any():
                raise _Problem(f"tensor '{name}' has missing values (NaN) but is declared {dtype}; "
                               f"declare a float dtype or fill them")
            integral = _integral_values(arr)
            if not integral.all():
                raise _Problem(f"tensor '{name}' is declared {dtype} but holds non-integral values such "
                               f"as {_short(arr[~integral].flat[0])}; declare a float dtype or round them")
            lo, hi = (float(arr.min()), float(arr.max())) if arr.size else (0, 0)
        else:
            lo, hi = (int(arr.min()), int(arr.max())) if arr.size else (0, 0)
        error = _int_range_error(name, "tensor", target, lo, hi)
        if error:
            raise _Problem(error)
        return arr.astype(target)
    with np.errstate(over="ignore"):
        out = arr.astype(target)
    if kind == "f" and target.itemsize < arr.dtype.itemsize:
        overflow = np.isfinite(arr) & ~np.isfinite(out)
        if overflow.any():
            raise _Problem(f"tensor '{name}' has values too large for {dtype} such as "
                           f"{_short(arr[overflow].flat[0])}; declare a wider float dtype")
    return out


class TensorSchema:
    """The named tensors a model takes or returns. Build it with :meth:`from_spec` or :meth:`infer`."""

    kind = "tensor"

    def __init__(self, tensors: Iterable[TensorSpec] | Mapping[str, Any]) -> None:
        if isinstance(tensors, Mapping):
            tensors = TensorSchema.from_spec(tensors).tensors
        tensors = tuple(tensors)
        seen: set[str] = set()
        for t in tensors:
            if not isinstance(t, TensorSpec):
                raise _spec_error(str(t), f"expected a TensorSpec, got {type(t).__name__} {_short(t)}")
            if t.name in seen:
                raise _spec_error(t.name, f"tensor '{t.name}' is declared twice")
            seen.add(t.name)
        self.tensors: tuple[TensorSpec, ...] = tensors

    @classmethod
    def from_spec(cls, spec: Any) -> "TensorSchema":
        """From a schema, a mapping ``{"image": ("float32", (-1, 28, 28))}`` (values may also be TensorSpecs
        or ``{"dtype", "shape"}`` dicts), a list of TensorSpecs, or a :meth:`to_dict` dict."""
        if isinstance(spec, TensorSchema):
            return spec
        if isinstance(spec, Mapping):
            if spec.get("type") == "tensor" and isinstance(spec.get("tensors"), list):
                return cls.from_dict(spec)
            tensors = []
            for name, value in spec.items():
                if isinstance(value, TensorSpec):
                    tensors.append(value)
                elif isinstance(value, Mapping) and "dtype" in value and "shape" in value:
                    tensors.append(TensorSpec(name, value["dtype"], value["shape"]))
                elif isinstance(value, (tuple, list)) and len(value) == 2:
                    tensors.append(TensorSpec(name, value[0], value[1]))
                else:
                    raise _spec_error(str(name), f"tensor '{name}' must be declared as (dtype, shape), "
                                                 f"e.g. ('float32', (-1, 28, 28)); got {_short(value)}")
            return cls(tensors)
        if isinstance(spec, (list, tuple)) and all(isinstance(t, TensorSpec) for t in spec):
            return cls(spec)
        raise _spec_error(_DATA, f"a tensor schema must be a mapping of name to (dtype, shape) such as "
                                 f"{{'image': ('float32', (-1, 28, 28))}}, got {type(spec).__name__}")

    @classmethod
    def infer(cls, tensors: Mapping[str, Any]) -> "TensorSchema":
        """The schema of named arrays; the first dimension (the batch) is variable."""
        if not isinstance(tensors, Mapping):
            raise SchemaError([{"field": _DATA, "error": f"expected a dict of numpy arrays, got "
                                                          f"{type(tensors).__name__}"}])
        specs, problems = [], []
        for name, value in tensors.items():
            arr = np.asarray(value)
            if _string_array(arr):
                dtype = "string"
            elif arr.dtype.name in TENSOR_DTYPES:
                dtype = arr.dtype.name
            else:
                problems.append({"field": str(name), "error": f"tensor '{name}' has dtype {arr.dtype}, "
                                 f"which has no schema dtype; use one of {', '.join(TENSOR_DTYPES)}"})
                continue
            shape = (None, *arr.shape[1:]) if arr.ndim else ()
            specs.append(TensorSpec(str(name), dtype, shape))
        if problems:
            raise SchemaError(problems, summary="Cannot infer a schema")
        return cls(specs)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "TensorSchema":
        if d.get("type", "tensor") != "tensor":
            raise _spec_error(_DATA, f"not a tensor schema: type {d.get('type')!r}")
        return cls(TensorSpec.from_dict(t) for t in d["tensors"])

    def to_dict(self) -> dict:
        return {"type": "tensor", "tensors": [t.to_dict() for t in self.tensors]}

    @property
    def names(self) -> list[str]:
        return [t.name for t in self.tensors]

    def enforce(self, tensors: Any) -> Enforced:
        """New arrays with the declared dtypes, after checking shapes; raises :class:`SchemaError`.

        Lists are turned into arrays; a bare array (or list) is accepted when the schema has one tensor.
        Casts allowed: any lossless one, int -> float, float64 -> float32, integral floats -> int, 0/1 -> bool.
        """
        if not isinstance(tensors, Mapping) and len(self.tensors) == 1 and isinstance(tensors, (np.ndarray, list)):
            tensors = {self.tensors[0].name: tensors}
        if not isinstance(tensors, Mapping):
            raise SchemaError([{"field": _DATA, "error": f"expected a dict of numpy arrays, got "
                                                          f"{type(tensors).__name__}"}])
        problems: list[dict] = []
        casts: list[str] = []
        out: dict[str, np.ndarray] = {}
        for spec in self.tensors:
            if spec.name not in tensors:
                problems.append({"field": spec.name,
                                 "error": f"missing tensor '{spec.name}' ({spec.describe()})"})
                continue
            value, note, errors = _convert_tensor(spec, tensors[spec.name])
            problems.extend({"field": spec.name, "error": e} for e in errors)
            if not errors:
                out[spec.name] = value if value is not tensors[spec.name] else np.array(value, copy=True)
                if note:
                    casts.append(note)
        if problems:
            raise SchemaError(problems)
        ignored = [str(k) for k in tensors if k not in out]
        return Enforced(out, ignored, casts)

    def problems(self, tensors: Any) -> list[dict]:
        """Strict check without coercion: numpy arrays of exactly the declared dtypes and shapes, no extra
        tensors. [] means conforms."""
        if not isinstance(tensors, Mapping):
            return [{"field": _DATA, "error": f"expected a dict of numpy arrays, got {type(tensors).__name__}"}]
        problems = []
        for spec in self.tensors:
            if spec.name not in tensors:
                problems.append({"field": spec.name, "error": f"missing tensor '{spec.name}' ({spec.describe()})"})
                continue
            arr = tensors[spec.name]
            if not isinstance(arr, np.ndarray):
                problems.append({"field": spec.name, "error": f"tensor '{spec.name}' is a "
                                 f"{type(arr).__name__}, not a numpy array"})
                continue
            ok = _string_array(arr) if spec.dtype == "string" else arr.dtype.name == spec.dtype
            if not ok:
                problems.append({"field": spec.name, "error": f"tensor '{spec.name}' has dtype {arr.dtype} "
                                 f"but the schema declares {spec.dtype}"})
            if not _shape_matches(spec.shape, arr.shape):
                problems.append({"field": spec.name, "error": f"tensor '{spec.name}' has shape "
                                 f"{_shape_text(arr.shape)} but the schema declares {_shape_text(spec.shape)}"})
        for name in tensors:
            if name not in set(self.names):
                problems.append({"field": str(name), "error": f"tensor '{name}' is not in the schema"})
        return problems

    def __iter__(self) -> Iterator[TensorSpec]:
        return iter(self.tensors)

    def __len__(self) -> int:
        return len(self.tensors)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TensorSchema) and self.tensors == other.tensors

    def __hash__(self) -> int:
        return hash((self.kind, self.tensors))

    def __repr__(self) -> str:
        return f"TensorSchema({ {t.name: (t.dtype, t.shape) for t in self.tensors} !r})"

    def _repr_html_(self) -> str:
        rows = "".join(f"<tr><td>{_html(t.name)}</td><td><code>{t.dtype}</code></td>"
                       f"<td><code>{_shape_text(t.shape)}</code></td></tr>" for t in self.tensors)
        return f"<table><tr><th>tensor</th><th>dtype</th><th>shape</th></tr>{rows}</table>"


Schema = Union[DataFrameSchema, TensorSchema]


# ------------------------------------------------------------------------------------------ helpers


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


def infer_schema(data: Any) -> Schema:
    """The schema of a DataFrame (:class:`DataFrameSchema`) or of a mapping of arrays (:class:`TensorSchema`)."""
    if isinstance(data, pd.DataFrame):
        return DataFrameSchema.infer(data)
    if isinstance(data, Mapping):
        return TensorSchema.infer(data)
    raise SchemaError([{"field": _DATA, "error": f"cannot infer a schema from {type(data).__name__}; "
                                                  f"pass a pandas DataFrame or a dict of numpy arrays"}],
                      summary="Cannot infer a schema")


# --------------------------------------------------------------------------------------- JSON codec


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


_PLAIN_JSON = frozenset((str, int, float, bool))


def _fast_json_rows(df: pd.DataFrame) -> list[list] | None:
    """The rows of :func:`dataframe_to_json` when every cell, as a Python object, already is a str, int, bool
    or float and none is missing (e.g. a model's float and int outputs), taken in one conversion rather than
    a Series per column; None otherwise."""
    cells = df.to_numpy(dtype=object)
    if not set(map(type, cells.ravel().tolist())) <= _PLAIN_JSON or pd.isna(cells).any():
        return None
    return cells.tolist()


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
