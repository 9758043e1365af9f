"""Input and output schemas: the one package that says what data a model accepts and returns.

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

The package, by subject: :mod:`.dtypes` (the dtypes a schema accepts, :data:`DTYPES`, and reading a dtype),
:mod:`.columns` (converting a column), :mod:`.fast` (the fast paths, and :class:`FrameColumns`), :mod:`.dataframe` (``DataFrameSchema``),
:mod:`.tensors` (``TensorSchema``), :mod:`.base` (what the two schemas share), :mod:`.codec` (JSON),
:mod:`.kinds` (either schema by kind), :mod:`.rows` (tensors as table rows), :mod:`.errors` (``SchemaError``). Import from this package, not from
its modules. It is part of the serving runtime: it imports only the standard library, numpy and pandas.
"""

from .base import Enforced
from .codec import dataframe_from_json, dataframe_to_json, dataframe_to_records, tensors_from_json, tensors_to_json
from .dataframe import ColumnSpec, DataFrameSchema
from .dtypes import DATAFRAME_DTYPES, DTYPES, TENSOR_DTYPES
from .errors import SchemaError
from .fast import FrameColumns, frame_columns_from_arrays
from .kinds import Schema, schema_from_dict, schema_from_spec
from .rows import row_shape_problem, tensors_from_rows, tensors_to_rows
from .tensors import TensorSchema, TensorSpec, json_array

__all__ = [
    "SchemaError",
    "ColumnSpec",
    "DataFrameSchema",
    "TensorSpec",
    "TensorSchema",
    "Enforced",
    "FrameColumns",
    "Schema",
    "DTYPES",
    "DATAFRAME_DTYPES",
    "TENSOR_DTYPES",
    "schema_from_dict",
    "schema_from_spec",
    "dataframe_to_json",
    "dataframe_to_records",
    "dataframe_from_json",
    "frame_columns_from_arrays",
    "tensors_to_json",
    "tensors_from_json",
    "json_array",
    "row_shape_problem",
    "tensors_from_rows",
    "tensors_to_rows",
]
