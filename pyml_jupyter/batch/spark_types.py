"""Spark types of the schema's dtypes: one table, and the check of a query's columns against an input schema.

Prediction columns get the Spark type of their output dtype (:func:`spark_type`): ``bool`` BOOLEAN,
``int8/16/32/64`` TINYINT/SMALLINT/INT/BIGINT, ``uint8/16/32`` the next wider signed type, ``uint64``
DECIMAL(20,0), ``float32/64`` FLOAT/DOUBLE, ``string`` STRING, ``datetime`` TIMESTAMP, ``binary`` BINARY;
``object`` has none. The model sees what ``mapInPandas`` delivers (Spark ``INT`` -> ``int32``, ``BIGINT`` ->
``int64``, ``STRING`` -> ``str`` objects, ``DATE`` -> ``datetime.date``, ``DECIMAL`` -> ``Decimal``, ``TIMESTAMP``
-> naive ``datetime64[ns]`` in the session time zone, integers with NULLs -> pandas ``IntN``), coerced to the
declared dtypes by the schema module.
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
from ..serving.schema import DATAFRAME_DTYPES, ColumnSpec, DataFrameSchema, SchemaError
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


def check_query_schema(spark_schema: "StructType", input_schema: DataFrameSchema) -> list[dict]:
    """Problems (``{"field", "error", "spark_type"}``) that make a query's columns unfit for a model; [] if fit.

    The decision is the schema module's: each Spark column becomes a one-row pandas column holding a value of
    the type ``mapInPandas`` will deliver, and :meth:`DataFrameSchema.enforce` says whether it can be coerced
    to the declared dtype (so ``INT`` for ``float64`` is accepted, ``INT`` for ``string`` is not). Only the
    wording is Spark's: the SQL type found and a ``CAST`` that fixes it. Columns the schema does not declare
    are fine (they are ignored, or kept with ``keep``).
    """
    require_pyspark()
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


def output_struct(keep_fields: list, output_schema: DataFrameSchema) -> "StructType":
    """The scored rows' Spark schema: the kept query columns, then the prediction columns by output dtype."""
    from pyspark.sql import types as T

    unstorable = [c.name for c in output_schema.columns if spark_types().get(c.dtype) is None]
    if unstorable:
        raise BatchError(f"The model's output column(s) {', '.join(unstorable)} have dtype 'object', which no Spark "
                         f"column type holds; declare them in output_schema with one of "
                         f"{', '.join(storable_dtypes())}.")
    out = [T.StructField(c.name, spark_type(c.dtype), c.nullable) for c in output_schema.columns]
    return T.StructType([*keep_fields, *out])
