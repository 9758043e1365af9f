"""Spark types of the schema's dtypes: one table, and the check of a query's columns against an input schema.

Prediction columns get the Spark type of their output dtype (:func:`spark_type`): ``bool`` BOOLEAN,
``int8/16/32/64`` TINYINT/SMALLINT/INT/BIGINT, ``uint8/16/32`` the next wider signed type, ``uint64``
DECIMAL(20,0), ``float32/64`` FLOAT/DOUBLE, ``string`` STRING, ``datetime`` TIMESTAMP, ``binary`` BINARY;
``object`` has none. The model sees what ``mapInPandas`` delivers (Spark ``INT`` -> ``int32``, ``BIGINT`` ->
``int64``, ``STRING`` -> ``str`` objects, ``DATE`` -> ``datetime.date``, ``DECIMAL`` -> ``Decimal``, ``TIMESTAMP``
-> naive ``datetime64[ns]`` in the session time zone, integers with NULLs -> pandas ``IntN``), coerced to the
declared dtypes by the schema module.

A TensorModel's tensors of shape ``(-1,)`` are columns of their dtype's type, those of shape ``(-1, k)`` arrays of
it (``ARRAY<DOUBLE>`` for float64), one row per element along the first axis (:func:`tensor_problems` says why
other tensors are not); the query's columns are judged by the schema module as for a DataFrameModel.
"""

from __future__ import annotations

import datetime as _dt
import decimal
import functools
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Mapping

import numpy as np
import pandas as pd

from ..errors import BatchError
from ..serving.schema import (DATAFRAME_DTYPES, TENSOR_DTYPES, ColumnSpec, DataFrameSchema, SchemaError,
                              TensorSchema, TensorSpec, row_shape_problem)
from .session import require_pyspark

if TYPE_CHECKING:  # pragma: no cover
    from pyspark.sql.types import DataType, StructField, StructType


@functools.cache
def spark_types() -> Mapping[str, "DataType | None"]:
    """The table: every dtype of the schema module -> the Spark type of a column of it (None: no Spark type).

    Keyed in the schema module's order (signed integers before unsigned ones), so reading it backwards gives
    each numeric Spark type its own dtype.
    """
    require_pyspark()
    from pyspark.sql import types as T

    types: dict[str, DataType | None] = {
        "bool": T.BooleanType(), "int8": T.ByteType(), "int16": T.ShortType(), "int32": T.IntegerType(),
        "int64": T.LongType(), "uint8": T.ShortType(), "uint16": T.IntegerType(), "uint32": T.LongType(),
        "uint64": T.DecimalType(20, 0), "float32": T.FloatType(), "float64": T.DoubleType(),
        "string": T.StringType(), "datetime": T.TimestampType(), "binary": T.BinaryType(), "object": None,
    }
    missing = [d for d in DATAFRAME_DTYPES if d not in types]
    if missing:  # a dtype the schema module gained: it needs its Spark type here
        raise BatchError(f"no Spark type is known for the schema dtype(s) {', '.join(missing)}.")
    return MappingProxyType({dtype: types[dtype] for dtype in DATAFRAME_DTYPES})


def storable_dtypes() -> list[str]:
    """The dtypes a Spark column can hold."""
    return [dtype for dtype, data_type in spark_types().items() if data_type is not None]


def spark_type(dtype: str) -> "DataType":
    """The Spark type of a schema dtype (``int64`` -> ``LongType()``, ...); ``object`` has none."""
    data_type = spark_types().get(ColumnSpec("_", dtype).dtype)
    if data_type is None:
        raise BatchError(f"a column of dtype {dtype!r} cannot be stored in a Spark table; declare it with one of "
                         f"{', '.join(storable_dtypes())}.")
    return data_type


def sql_type(dtype: str) -> str | None:
    """The Spark SQL spelling of a dtype's type (``int64`` -> ``BIGINT``; the ``CAST`` target for a mistyped
    column); None for a dtype no Spark column holds."""
    data_type = spark_types().get(dtype)
    return data_type.simpleString().upper() if data_type is not None else None


def _numpy_dtype(data_type: "DataType") -> str | None:
    """The numpy dtype ``mapInPandas`` delivers a boolean or numeric (not decimal) Spark column as."""
    from pyspark.sql import types as T

    if isinstance(data_type, T.DecimalType) or not isinstance(data_type, (T.BooleanType, T.NumericType)):
        return None
    return next((dtype for dtype, known in spark_types().items() if known == data_type), None)


def _representative(data_type: "DataType") -> pd.Series | None:
    """One non-null value of a Spark type exactly as ``mapInPandas`` hands it to Python, or None for NULL.

    The schema module decides by dtype and content (and, for a few rules, values: integral floats may become
    ints, 0/1 may become bools, ISO strings may become datetimes); a neutral value lets it decide for a type
    what it would decide for the column's rows, which are then enforced again, batch by batch, on executors.
    """
    from pyspark.sql import types as T

    numpy = _numpy_dtype(data_type)
    if numpy is not None:
        return pd.Series(np.zeros(1, dtype=numpy))
    if isinstance(data_type, (T.TimestampType, T.TimestampNTZType)):
        return pd.Series(np.zeros(1, dtype="datetime64[ns]"))
    if isinstance(data_type, T.NullType):
        return None
    value: Any
    if isinstance(data_type, (T.StringType, T.VarcharType, T.CharType)):
        value = "1970-01-01"
    elif isinstance(data_type, T.BinaryType):
        value = b""
    elif isinstance(data_type, T.DateType):
        value = _dt.date(1970, 1, 1)
    elif isinstance(data_type, T.DecimalType):
        value = decimal.Decimal(0)
    else:  # arrays, maps, structs, intervals...: opaque objects, acceptable only to an `object` column
        value = object()
    return pd.Series([value], dtype=object)


def check_query_schema(spark_schema: "StructType", input_schema: DataFrameSchema | TensorSchema) -> list[dict]:
    """Problems (``{"field", "error", "spark_type"}``) that make a query's columns unfit for a model; [] if fit.

    The decision is the schema module's: each Spark column becomes a one-row pandas column holding a value of
    the type ``mapInPandas`` will deliver, and :meth:`DataFrameSchema.enforce` says whether it can be coerced
    to the declared dtype (so ``INT`` for ``float64`` is accepted, ``INT`` for ``string`` is not). Only the
    wording is Spark's: the SQL type found and a ``CAST`` that fixes it. Columns the schema does not declare
    are fine (they are ignored, or kept with ``keep``). A tensor schema is checked by :func:`_check_tensor_columns`.
    """
    require_pyspark()
    if isinstance(input_schema, TensorSchema):
        return _check_tensor_columns(spark_schema, input_schema)
    fields = list(spark_schema.fields)
    by_name: dict[str, list] = {}
    for f in fields:
        by_name.setdefault(f.name, []).append(f)
    declared = {c.name: c for c in input_schema.columns}
    problems: list[dict] = []
    columns: list[pd.Series] = []
    for f in fields:
        value = _representative(f.dataType)
        if value is None:  # NULL in every row (Spark's VOID type)
            problems += _all_null_problem(f, declared.get(f.name), len(by_name[f.name]))
            value = pd.Series([None], dtype=object)
        columns.append(value.rename(f.name))
    frame = pd.concat(columns, axis=1) if columns else pd.DataFrame(index=range(1))
    try:
        input_schema.enforce(frame)
        found: list[dict] = []
    except SchemaError as exc:
        found = exc.problems
    reported = {p["field"] for p in problems}
    for p in found:
        if p["field"] not in reported:
            problems.append(_problem(p, declared.get(p["field"]), by_name.get(p["field"], []), fields))
    return problems


def _all_null_problem(f: "StructField", spec: ColumnSpec | None, count: int) -> list[dict]:
    sql = f.dataType.simpleString().upper()
    if spec is None or spec.nullable or count != 1:
        return []
    return [{"field": f.name, "spark_type": sql,
             "error": f"column '{f.name}' is NULL in every row ({sql}) but the model's input schema declares "
                      f"{spec.dtype} (not nullable)"}]


def _problem(found: dict, spec: ColumnSpec | None, matches: list, fields: list) -> dict:
    """The schema module's problem with a column, worded for a query (the SQL type found, a CAST that fixes it)."""
    name = found["field"]
    if spec is None:  # not expected: the schema only reports its own columns
        return {"field": name, "error": found["error"], "spark_type": ""}
    if not matches:
        similar = [f.name for f in fields if f.name.lower() == name.lower()]
        hint = f"; the query has '{similar[0]}': alias it AS {name}" if similar else ""
        return {"field": name, "spark_type": "", "error": f"missing column '{name}' ({spec.declared}){hint}"}
    found_type = matches[0].dataType.simpleString().upper()
    if len(matches) > 1:
        return {"field": name, "spark_type": found_type,
                "error": f"column '{name}' appears {len(matches)} times in the query; keep one"}
    cast = sql_type(spec.dtype)
    fix = f"; CAST it in the query: CAST({name} AS {cast}) AS {name}" if cast else ""
    return {"field": name, "spark_type": found_type,
            "error": f"column '{name}' is {found_type} in the query but the model's input schema declares "
                     f"{spec.declared}{fix}"}


def output_struct(keep_fields: list, output_schema: DataFrameSchema | TensorSchema) -> "StructType":
    """The scored rows' Spark schema: the kept query columns, then the prediction columns by output dtype
    (for a tensor of shape (-1, k): an array of its dtype)."""
    from pyspark.sql import types as T

    if isinstance(output_schema, TensorSchema):
        out = [T.StructField(t.name, _tensor_type(t), False) for t in output_schema.tensors]
        return T.StructType([*keep_fields, *out])

    unstorable = [c.name for c in output_schema.columns if spark_types().get(c.dtype) is None]
    if unstorable:
        raise BatchError(f"The model's output column(s) {', '.join(unstorable)} have dtype 'object', which no Spark "
                         f"column type holds; declare them in output_schema with one of "
                         f"{', '.join(storable_dtypes())}.")
    out = [T.StructField(c.name, spark_type(c.dtype), c.nullable) for c in output_schema.columns]
    return T.StructType([*keep_fields, *out])


# ------------------------------------------------------------------------------------- tensors as columns


def _row_dtypes() -> list[str]:
    """The tensor dtypes a Spark column (or array element) carries as numpy delivers them (no decimals)."""
    from pyspark.sql import types as T

    return [d for d, t in spark_types().items()
            if d in TENSOR_DTYPES and t is not None and not isinstance(t, T.DecimalType)]


def tensor_problems(schema: TensorSchema, role: str) -> list[str]:
    """Why ``schema``'s tensors cannot be columns of a Spark table ([] if they can): shape, then dtype."""
    require_pyspark()
    problems = []
    for spec in schema.tensors:
        shape = row_shape_problem(spec)
        if shape:
            problems.append(f"the {role} {shape}")
        elif spec.dtype not in _row_dtypes():
            problems.append(f"the {role} tensor '{spec.name}' has dtype {spec.dtype}, which no Spark column carries "
                            f"here; declare one of {', '.join(_row_dtypes())}")
    return problems


def _tensor_type(spec: TensorSpec) -> "DataType":
    """A row-shaped tensor's Spark column type: its dtype's type, or an array of it for shape (-1, k)."""
    from pyspark.sql import types as T

    element = spark_type(spec.dtype)
    return element if len(spec.shape) == 1 else T.ArrayType(element, containsNull=False)


def _check_tensor_columns(spark_schema: "StructType", schema: TensorSchema) -> list[dict]:
    """Problems with a query's columns for row-shaped input tensors: a column per tensor, of its name, a scalar
    for (-1,) and an array for (-1, k), whose (element) type the schema module accepts for the tensor's dtype."""
    from pyspark.sql import types as T

    problems = []
    for spec in schema.tensors:
        matches = [f for f in spark_schema.fields if f.name == spec.name]
        wanted = _tensor_type(spec).simpleString().upper()
        fix = f"; CAST it in the query: CAST({spec.name} AS {wanted}) AS {spec.name}"
        if len(matches) != 1:
            similar = [f.name for f in spark_schema.fields if f.name.lower() == spec.name.lower()]
            hint = f"; the query has '{similar[0]}': alias it AS {spec.name}" if similar and not matches else ""
            error = (f"column '{spec.name}' appears {len(matches)} times in the query; keep one" if matches else
                     f"missing column '{spec.name}' ({wanted}, for tensor '{spec.name}': {spec.describe()}){hint}")
            problems.append({"field": spec.name, "spark_type": "", "error": error})
            continue
        data_type = matches[0].dataType
        found = data_type.simpleString().upper()
        is_array = isinstance(data_type, T.ArrayType)
        value = _representative(data_type.elementType if is_array else data_type)
        fits = value is not None and is_array == (len(spec.shape) == 2)
        if fits:
            arr = value.to_numpy()
            arr = np.tile(arr[:, None], (1, spec.shape[1])) if is_array else arr
            try:
                TensorSchema([spec]).enforce({spec.name: arr})
            except SchemaError:
                fits = False
        if not fits:
            problems.append({"field": spec.name, "spark_type": found,
                             "error": f"column '{spec.name}' is {found} in the query but tensor '{spec.name}' is "
                                      f"{spec.describe()}{fix}"})
    return problems
