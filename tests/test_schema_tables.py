"""Every target's type table covers every dtype the schema package accepts (``schema.DTYPES``).

A dtype added to the schema without an entry in one of these tables would be served, documented or logged
with a wrong (or no) type; these tests name the table to extend.
"""

from __future__ import annotations

import numpy as np
import pytest

from pyml_jupyter.serving.openapi import JSON_TYPES
from pyml_jupyter.serving.schema import DATAFRAME_DTYPES, DTYPES, TENSOR_DTYPES, DataFrameSchema, TensorSchema
from pyml_jupyter.serving.v2 import V2_DATATYPES, _V2_TO_NUMPY, v2_datatype
from pyml_jupyter.tracking import _MLFLOW_TYPES, mlflow_signature


def test_dtypes_are_the_column_and_tensor_dtypes_each_once():
    assert len(set(DTYPES)) == len(DTYPES)
    assert set(DTYPES) == set(DATAFRAME_DTYPES) | set(TENSOR_DTYPES)


@pytest.mark.parametrize("dtype", DTYPES)
def test_every_dtype_is_accepted_by_the_schema_of_its_kind(dtype):
    if dtype in DATAFRAME_DTYPES:
        assert DataFrameSchema({"x": dtype}).columns[0].dtype == dtype
    if dtype in TENSOR_DTYPES:
        assert TensorSchema({"x": (dtype, (-1,))}).tensors[0].dtype == dtype


def test_openapi_table_covers_every_dtype():
    assert set(JSON_TYPES) == set(DTYPES)


def test_openapi_table_holds_json_schema_types():
    types = {t.get("type") for t in JSON_TYPES.values()}
    assert types <= {"boolean", "integer", "number", "string", None}
    assert JSON_TYPES["object"] == {}  # any JSON value


def test_v2_table_covers_every_dtype():
    assert set(V2_DATATYPES) == set(DTYPES)


@pytest.mark.parametrize("dtype", [d for d in DTYPES if V2_DATATYPES[d] != "BYTES"])
def test_v2_numeric_datatypes_are_read_back_as_their_dtype(dtype):
    assert _V2_TO_NUMPY[V2_DATATYPES[dtype]] == dtype
    assert v2_datatype(np.dtype(dtype)) == V2_DATATYPES[dtype]


def test_v2_datatypes_are_the_protocols_datatypes_each_once():
    assert set(V2_DATATYPES.values()) == set(_V2_TO_NUMPY)


def test_mlflow_table_covers_every_column_dtype():
    assert set(_MLFLOW_TYPES) == set(DATAFRAME_DTYPES)


def test_mlflow_table_holds_mlflow_data_types():
    from mlflow.types import DataType

    assert {t for t in _MLFLOW_TYPES.values() if t is not None} <= set(DataType.__members__)


@pytest.mark.parametrize("dtype", [d for d in DATAFRAME_DTYPES if _MLFLOW_TYPES[d] is not None])
def test_every_expressible_column_dtype_gets_an_mlflow_signature(dtype):
    schema = DataFrameSchema({"x": dtype})
    assert mlflow_signature(schema, schema) is not None


@pytest.mark.parametrize("dtype", [
    pytest.param(d, marks=pytest.mark.xfail(d == "string", strict=True, raises=TypeError,
                                            reason="tracking.mlflow_signature builds np.dtype('string')"))
    for d in TENSOR_DTYPES])
def test_every_tensor_dtype_gets_an_mlflow_signature(dtype):
    schema = TensorSchema({"x": (dtype, (-1, 2))})
    assert mlflow_signature(schema, schema) is not None
