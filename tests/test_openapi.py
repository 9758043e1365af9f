"""Specification of pyml_jupyter.serving.openapi: the OpenAPI document of a model, built from its contract.

Column and tensor types come from ``openapi.JSON_TYPES`` (one entry per schema dtype); the examples are the
package's sample when it is published (else synthesized from the schema), valid requests either way by the
document's own schemas (checked here with jsonschema).
"""

from __future__ import annotations

import datetime
from pathlib import Path

import jsonschema
import numpy as np
import pandas as pd
import pytest

from pyml_jupyter.serving.loader import PackageInfo
from pyml_jupyter.serving.openapi import JSON_TYPES, openapi_document
from pyml_jupyter.serving.schema import (
    DATAFRAME_DTYPES,
    TENSOR_DTYPES,
    DataFrameSchema,
    TensorSchema,
    dataframe_to_records,
)
from pyml_jupyter.serving.scoring import V2_DATATYPES

# One column per DataFrame dtype, with two values each, and a nullable column with a missing value.
VALUES = {
    "bool": [True, False], "int8": [-8, 8], "int16": [-16, 16], "int32": [-32, 32], "int64": [-2**40, 64],
    "uint8": [0, 255], "uint16": [0, 16], "uint32": [0, 2**32 - 1], "uint64": [0, 2**64 - 1],
    "float32": [0.5, -1.5], "float64": [0.25, 1e300], "string": ["paris", "é"],
    "datetime": [datetime.datetime(2024, 1, 31, 12), datetime.datetime(1999, 12, 31)],
    "binary": [b"\x00\xff", b""], "object": [{"any": ["json"]}, 3],
}
INPUTS = DataFrameSchema({**{f"c_{d}": d for d in DATAFRAME_DTYPES}, "maybe": "int64?"})
OUTPUTS = DataFrameSchema({"score": "float64", "label": "int64"})
TENSOR_INPUTS = TensorSchema({"image": ("float32", (-1, 2, 2)), "ids": ("int64", (-1,)), "tag": ("string", (-1,))})
TENSOR_OUTPUTS = TensorSchema({"probs": ("float64", (-1, 3))})


def package(kind: str, inputs, outputs) -> PackageInfo:
    return PackageInfo(path=Path("."), kind=kind, class_name="Model", input_schema=inputs, output_schema=outputs,
                       artifacts={}, python_version="3.11.0", takes_artifacts=False)


def dataframe_sample() -> pd.DataFrame:
    frame = pd.DataFrame({f"c_{d}": pd.Series(v, dtype=object) for d, v in VALUES.items()})
    frame["maybe"] = pd.Series([1, None], dtype=object)
    return INPUTS.enforce(frame).data


def tensor_sample() -> dict:
    return TENSOR_INPUTS.enforce({"image": np.arange(8, dtype=np.float32).reshape(2, 2, 2),
                                  "ids": np.array([1, 2]), "tag": np.array(["a", "b"], dtype=object)}).data


@pytest.fixture(scope="module")
def frame_doc() -> dict:
    return openapi_document(package("dataframe", INPUTS, OUTPUTS), model_name="churn", model_version="3",
                            sample=dataframe_sample())


@pytest.fixture(scope="module")
def tensor_doc() -> dict:
    return openapi_document(package("tensor", TENSOR_INPUTS, TENSOR_OUTPUTS), model_name="digits",
                            model_version="1", sample=tensor_sample())


def as_json_schema(node):
    """An OpenAPI 3.0 schema as JSON Schema draft 4: ``nullable: true`` becomes a ``null`` type."""
    if isinstance(node, list):
        return [as_json_schema(v) for v in node]
    if not isinstance(node, dict):
        return node
    out = {k: as_json_schema(v) for k, v in node.items() if k != "nullable"}
    if node.get("nullable") and "type" in node:
        out["type"] = [node["type"], "null"]
    return out


def validate(doc: dict, instance, name: str) -> None:
    """Validate ``instance`` against ``#/components/schemas/NAME`` of ``doc``."""
    schema = {"$ref": f"#/components/schemas/{name}", "components": as_json_schema(doc["components"])}
    jsonschema.Draft4Validator(schema).validate(instance)


def request_content(doc: dict) -> dict:
    return doc["paths"]["/invocations"]["post"]["requestBody"]["content"]


def form(doc: dict, key: str) -> dict:
    """The schema of the value of ``key`` (``inputs``, ``instances``...) in a request of that form."""
    branches = doc["components"]["schemas"]["InvocationsRequest"]["oneOf"]
    return next(b["properties"][key] for b in branches if b["required"] == [key])


def is_valid(doc: dict, instance, name: str = "InvocationsRequest") -> bool:
    try:
        validate(doc, instance, name)
    except jsonschema.ValidationError:
        return False
    return True


# ------------------------------------------------------------------------------------ DataFrame models


def test_the_document_is_openapi_3_titled_with_the_model_and_version(frame_doc):
    assert frame_doc["openapi"].startswith("3.0")
    assert frame_doc["info"]["title"] == "churn" and frame_doc["info"]["version"] == "3"
    assert "dataframe model Model" in frame_doc["info"]["description"]


@pytest.mark.parametrize("dtype", DATAFRAME_DTYPES)
def test_each_input_column_has_the_json_type_of_its_dtype(frame_doc, dtype):
    column = frame_doc["components"]["schemas"]["InputRow"]["properties"][f"c_{dtype}"]
    assert {k: v for k, v in column.items() if k != "description"} == {
        k: v for k, v in JSON_TYPES[dtype].items() if k != "description"}
    assert column["description"] == dtype


def test_a_nullable_column_is_nullable_and_not_required(frame_doc):
    row = frame_doc["components"]["schemas"]["InputRow"]
    assert row["properties"]["maybe"] == {**JSON_TYPES["int64"], "nullable": True, "description": "int64?"}
    assert "maybe" not in row["required"]
    assert row["required"] == [f"c_{d}" for d in DATAFRAME_DTYPES]


def test_output_rows_list_the_output_columns(frame_doc):
    row = frame_doc["components"]["schemas"]["OutputRow"]
    # an answer's float may be NaN or infinite (written as MLflow writes them): no range, and nullable
    assert row["properties"] == {"score": {"type": "number", "format": "double", "description": "float64",
                                           "nullable": True},
                                 "label": {**JSON_TYPES["int64"], "description": "int64"}}


def test_every_record_of_the_sample_is_a_valid_input_row(frame_doc):
    for record in dataframe_to_records(dataframe_sample()):
        validate(frame_doc, record, "InputRow")


def test_a_row_of_the_wrong_type_is_not_a_valid_input_row(frame_doc):
    record = dataframe_to_records(dataframe_sample())[0]
    with pytest.raises(jsonschema.ValidationError, match="c_int64|'x' is not of type 'integer'"):
        validate(frame_doc, {**record, "c_int64": "x"}, "InputRow")


def test_the_json_example_is_the_sample_in_split_form_and_a_valid_request(frame_doc):
    example = request_content(frame_doc)["application/json"]["example"]
    assert example["dataframe_split"]["columns"] == INPUTS.names
    assert len(example["dataframe_split"]["data"]) == 2
    validate(frame_doc, example, "InvocationsRequest")


def test_the_csv_body_names_the_input_columns_and_has_the_sample_as_example(frame_doc):
    csv = request_content(frame_doc)["text/csv"]
    assert csv["schema"]["description"].endswith(", ".join(INPUTS.names))
    assert csv["example"].splitlines()[0] == ",".join(INPUTS.names)


def test_without_a_sample_the_examples_are_synthesized_from_the_schema_and_valid():
    doc = openapi_document(package("dataframe", INPUTS, OUTPUTS), model_name="churn", model_version=None)
    content = request_content(doc)
    example = content["application/json"]["example"]
    assert example["dataframe_split"]["columns"] == INPUTS.names and len(example["dataframe_split"]["data"]) == 1
    validate(doc, example, "InvocationsRequest")
    assert content["text/csv"]["example"].splitlines()[0] == ",".join(INPUTS.names)
    tensors = openapi_document(package("tensor", TENSOR_INPUTS, TENSOR_OUTPUTS), model_name="digits",
                               model_version="1")
    validate(tensors, request_content(tensors)["application/json"]["example"], "InvocationsRequest")
    assert doc["info"]["version"] == "0"


# --------------------------------------------------------------------------------------- tensor models


@pytest.mark.parametrize("name", TENSOR_INPUTS.names)
def test_each_input_tensor_nests_its_json_type_once_per_dimension(tensor_doc, name):
    spec = next(t for t in TENSOR_INPUTS.tensors if t.name == name)
    node = form(tensor_doc, "inputs")["properties"][name]
    assert node["description"].startswith(f"{spec.dtype}, shape (")
    for d in spec.shape:  # a fixed dimension: a list of exactly that length
        assert node["type"] == "array" and node.get("minItems") == node.get("maxItems") == d
        node = node["items"]
    # a float tensor's null is read as NaN
    assert node == {**JSON_TYPES[spec.dtype], **({"nullable": True} if JSON_TYPES[spec.dtype].get("type") == "number"
                                                 else {})}


def test_every_tensor_dtype_has_a_json_type():
    assert set(TENSOR_DTYPES) <= set(JSON_TYPES)


def test_a_tensor_model_takes_json_only(tensor_doc):
    assert list(request_content(tensor_doc)) == ["application/json"]


def test_the_tensor_example_is_the_sample_and_a_valid_request(tensor_doc):
    example = request_content(tensor_doc)["application/json"]["example"]
    assert example["inputs"]["image"] == tensor_sample()["image"].tolist()
    validate(tensor_doc, example, "InvocationsRequest")


def test_the_tensor_response_lists_the_output_tensors(tensor_doc):
    response = tensor_doc["components"]["schemas"]["InvocationsResponse"]
    probs = response["properties"]["predictions"]["properties"]["probs"]
    assert probs["items"]["items"] == {"type": "number", "format": "double", "nullable": True}


# ---------------------------------------------------------------------------------------------- V2


def test_v2_tensors_may_have_exactly_the_datatypes_of_the_v2_table(frame_doc, tensor_doc):
    for doc in (frame_doc, tensor_doc):
        for item in doc["components"]["schemas"]["V2Request"]["properties"]["inputs"]["items"]["anyOf"]:
            enum = item["properties"]["datatype"]["enum"]
            assert set(enum) == set(V2_DATATYPES.values()) and len(enum) == len(set(enum))
        assert "/v2/models/" + doc["info"]["title"] + "/infer" in doc["paths"]


def test_a_request_has_exactly_one_of_the_scoring_protocols_keys(frame_doc, tensor_doc):
    record = dataframe_to_records(dataframe_sample())[0]
    assert is_valid(frame_doc, {"dataframe_records": [record]})
    assert not is_valid(frame_doc, {"dataframe_records": [record], "inputs": "anything"})
    assert not is_valid(frame_doc, {"other": [record]})
    example = request_content(tensor_doc)["application/json"]["example"]
    assert not is_valid(tensor_doc, {**example, "dataframe_split": {}})


def test_a_dataframe_models_instances_are_records_or_columns_as_its_inputs(frame_doc):
    assert form(frame_doc, "instances") == form(frame_doc, "inputs")


def test_a_tensor_models_instances_are_examples_naming_every_input(tensor_doc):
    """MLflow's scoring server reads ``instances`` as one {name: example} per example (an example: the tensor
    without its first dimension)."""
    instance = {"image": [[0.5, 1.0], [2.0, 3.0]], "ids": 7, "tag": "a"}
    assert is_valid(tensor_doc, {"instances": [instance, instance]})
    assert is_valid(tensor_doc, {"instances": []})
    assert not is_valid(tensor_doc, {"instances": [instance, {"image": instance["image"], "ids": 7}]})
    assert not is_valid(tensor_doc, {"instances": [{**instance, "image": [[0.5, 1.0]]}]})


def test_a_one_tensor_models_instances_may_be_the_tensor_itself():
    doc = openapi_document(package("tensor", TensorSchema({"x": ("float32", (-1, 3))}), TENSOR_OUTPUTS),
                           model_name="m", model_version="1")
    assert is_valid(doc, {"instances": [[1.0, 2.0, 3.0]]})
    assert is_valid(doc, {"instances": [{"x": [1.0, 2.0, 3.0]}]})
    assert not is_valid(doc, {"instances": [[1.0, 2.0]]})
    assert not is_valid(doc, {"instances": [[1.0, True, 3.0]]})  # a boolean is no number


def test_a_tensor_with_a_fixed_first_dimension_fixes_the_number_of_instances():
    doc = openapi_document(package("tensor", TensorSchema({"x": ("int64", (2,))}), TENSOR_OUTPUTS),
                           model_name="m", model_version="1")
    assert is_valid(doc, {"instances": [1, 2]}) and not is_valid(doc, {"instances": [1, 2, 3]})
    scalar = openapi_document(package("tensor", TensorSchema({"x": ("int64", ())}), TENSOR_OUTPUTS),
                              model_name="m", model_version="1")
    assert not is_valid(scalar, {"instances": [1]})  # a tensor without dimensions has no examples


def test_a_datetime_is_documented_within_the_years_a_nanosecond_timestamp_holds(frame_doc):
    record = dataframe_to_records(dataframe_sample())[0]
    assert is_valid(frame_doc, {**record, "c_datetime": "2261-12-31T23:59:59Z"}, "InputRow")
    assert is_valid(frame_doc, {**record, "c_datetime": "1678-01-01T00:00:00Z"}, "InputRow")
    assert not is_valid(frame_doc, {**record, "c_datetime": "2263-01-01T00:00:00Z"}, "InputRow")
    assert not is_valid(frame_doc, {**record, "c_datetime": "0001-01-01T00:00:00Z"}, "InputRow")


def test_the_descriptions_state_the_request_limits():
    from pyml_jupyter.serving.limits import Limits

    doc = openapi_document(package("dataframe", INPUTS, OUTPUTS), model_name="churn", model_version="3",
                           limits=Limits(max_rows=7, max_columns=2))
    description = doc["paths"]["/invocations"]["post"]["description"]
    assert "at most 7 rows" in description and "PYML_MAX_ROWS" in description
    assert f"at most {len(INPUTS)} columns" in description  # never fewer than the model's own
