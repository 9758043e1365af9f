"""The OpenAPI 3 document of a served model, generated from its contract.

The request schema of ``/invocations`` lists the model's own columns (tensors) with their JSON types, with an
example synthesized from the schema (the package's sample only when ``PYML_OPENAPI_SAMPLE=1`` publishes it); the response schema lists the output columns. A client
generator or Swagger UI pointed at ``/openapi.json`` therefore shows this model's API, not a generic one.
This module is part of the serving runtime: stdlib (and the schema package and the v2 module) only.
"""

from __future__ import annotations

import copy
from typing import Any

from .schema import ColumnSpec, DataFrameSchema, TensorSchema, TensorSpec, dataframe_to_json, tensors_to_json
from .limits import DEFAULT_LIMITS, Limits
from .rules import CROSS_FIELD_RULES, rules_text
from .v2 import V2_DATATYPES

__all__ = ["openapi_document", "json_type", "JSON_TYPES"]


def _integer(fmt: str, bits: int, *, unsigned: bool = False) -> dict[str, Any]:
    low, high = (0, 2 ** bits - 1) if unsigned else (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1)
    return {"type": "integer", "format": fmt, "minimum": low, "maximum": high}


def _number(fmt: str, largest: float, *, rounds_up_from: float | None = None) -> dict[str, Any]:
    """A float of a dtype: up to its largest value, or (narrow floats) below the halfway point to the next
    power, from where a double rounds to infinity and the server refuses it."""
    if rounds_up_from is None:
        return {"type": "number", "format": fmt, "minimum": -largest, "maximum": largest}
    return {"type": "number", "format": fmt, "minimum": -rounds_up_from, "exclusiveMinimum": True,
            "maximum": rounds_up_from, "exclusiveMaximum": True}


# The JSON Schema (OpenAPI 3.0) of one value of each schema dtype, with the dtype's range (tests/
# test_schema_tables.py checks that every dtype the schema accepts is here).
JSON_TYPES: dict[str, dict[str, Any]] = {
    "bool": {"type": "boolean"},
    "int8": _integer("int32", 8), "int16": _integer("int32", 16), "int32": _integer("int32", 32),
    "int64": _integer("int64", 64),
    "uint8": _integer("int32", 8, unsigned=True), "uint16": _integer("int32", 16, unsigned=True),
    "uint32": _integer("int64", 32, unsigned=True), "uint64": _integer("int64", 64, unsigned=True),
    "float16": _number("float", 65504.0, rounds_up_from=65520.0),
    "float32": _number("float", 3.4028234663852886e38, rounds_up_from=3.4028235677973366e38),
    "float64": _number("double", 1.7976931348623157e308),
    "string": {"type": "string"},
    # a datetime is held in nanoseconds: years 1678 to 2261 fit whole (pandas' range ends within 1677 and 2262)
    "datetime": {"type": "string", "format": "date-time",
                 "pattern": r"^(16(7[89]|[89]\d)|1[7-9]\d\d|2[01]\d\d|22[0-5]\d|226[01])-"},
    "binary": {"type": "string", "format": "byte", "description": "base64"},
    "object": {},  # any JSON value
}


def json_type(dtype: str) -> dict[str, Any]:
    """The JSON Schema (OpenAPI 3.0) of one value of a schema dtype (a new dict: callers add to it)."""
    return copy.deepcopy(JSON_TYPES.get(dtype, {}))


def _answered(value: dict[str, Any]) -> dict[str, Any]:
    """A value in an answer: a float may be any double, NaN or infinite (see jsonio.py), so no range."""
    if value.get("type") == "number":
        value = {k: v for k, v in value.items() if not k.startswith(("minimum", "maximum", "exclusive"))}
        value["nullable"] = True  # NaN, Infinity, -Infinity: the literals Python's json (and MLflow) write
    return value


def _column(spec: ColumnSpec, *, output: bool = False) -> dict[str, Any]:
    out = json_type(spec.dtype)
    if spec.nullable:
        out["nullable"] = True
    out["description"] = f"{spec.declared}"
    return _answered(out) if output else out


def _tensor_value(dtype: str) -> dict[str, Any]:
    """One value of a tensor in a request: a float may be null, read as NaN (as numpy reads None)."""
    value = json_type(dtype)
    if value.get("type") == "number":  # numpy reads null as NaN
        value["nullable"] = True
    return value


def _tensor(spec: TensorSpec, *, output: bool = False) -> dict[str, Any]:
    item: dict[str, Any] = _answered(json_type(spec.dtype)) if output else _tensor_value(spec.dtype)
    for d in reversed(spec.shape):  # a fixed dimension is a list of exactly that length
        item = {"type": "array", "items": item, **({} if d is None else {"minItems": d, "maxItems": d})}
    shape = ", ".join("None" if d is None else str(d) for d in spec.shape)
    item["description"] = f"{spec.dtype}, shape ({shape})"
    return item


# One plausible value per dtype, for the examples synthesized from the schema (no real data is published).
_EXAMPLE_VALUES: dict[str, Any] = {"bool": True, "string": "text", "datetime": "2024-01-31T12:00:00",
                                   "binary": "AAE=", "object": "value",
                                   **{d: 1 for d in JSON_TYPES if d.startswith(("int", "uint"))},
                                   **{d: 0.5 for d in JSON_TYPES if d.startswith("float")}}


def _synthetic_frame_example(schema: DataFrameSchema) -> tuple[dict, str]:
    """A one-row JSON request (split form) and CSV body built from the schema alone."""
    row = [_EXAMPLE_VALUES[c.dtype] for c in schema.columns]
    csv_row = ",".join(str(v).lower() if isinstance(v, bool) else str(v) for v in row)
    return ({"dataframe_split": {"columns": schema.names, "data": [row]}},
            ",".join(schema.names) + "\n" + csv_row + "\n")


def _synthetic_tensor(spec: TensorSpec) -> Any:
    value: Any = _EXAMPLE_VALUES["string" if spec.dtype == "string" else spec.dtype]
    for d in reversed(spec.shape):
        value = [copy.deepcopy(value) for _ in range(1 if d is None else d)]
    return value


def _row(schema: DataFrameSchema, *, output: bool = False) -> dict[str, Any]:
    return {"type": "object", "properties": {c.name: _column(c, output=output) for c in schema.columns},
            "required": [c.name for c in schema.columns if not c.nullable] or None}


def _clean(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items() if v is not None}
    if isinstance(obj, list):
        return [_clean(v) for v in obj]
    return obj


def _dataframe_components(inputs: DataFrameSchema, outputs: DataFrameSchema, sample: Any) -> dict:
    columns = {"type": "object", "description": "{column: [values]}, every list of the same length",
               "properties": {c.name: {"type": "array", "items": _column(c)} for c in inputs.columns},
               "required": [c.name for c in inputs.columns if not c.nullable] or None}
    split = {
        "type": "object", "required": ["data"],  # without 'columns', the values are in the schema's order
        "properties": {
            "columns": {"type": "array", "items": {"type": "string", "enum": inputs.names}},
            "data": {"type": "array", "description": "rows, values in the order of 'columns'",
                     "items": {"type": "array", "items": {}}},
        },
    }
    rows = {"type": "array", "items": {"$ref": "#/components/schemas/InputRow"}}
    request = _one_key_of({"dataframe_split": split, "dataframe_records": rows, "instances": {"oneOf": [rows, columns]},
                           "inputs": {"oneOf": [rows, columns]}})
    if sample is not None:  # published only when the server is told to (PYML_OPENAPI_SAMPLE=1)
        example, csv_example = {"dataframe_split": dataframe_to_json(sample)}, sample.to_csv(index=False)
    else:
        example, csv_example = _synthetic_frame_example(inputs)
    return {
        "schemas": {
            "InputRow": _row(inputs),
            "OutputRow": _row(outputs, output=True),
            "InvocationsRequest": request,
            "InvocationsResponse": {"type": "object", "required": ["predictions"], "properties": {
                "predictions": {"type": "array", "items": {"$ref": "#/components/schemas/OutputRow"}}}},
        },
        "example": example,
        "csv_example": csv_example,
    }


def _one_key_of(forms: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """A body that is an object with exactly one of the keys of the scoring protocol: one of ``forms`` (key:
    its value's schema), the other keys absent."""
    keys = ("dataframe_split", "dataframe_records", "instances", "inputs")
    return {"oneOf": [{"type": "object", "required": [key], "properties": {
        **{other: {"not": {}} for other in keys if other != key}, key: value}} for key, value in forms.items()]}


def _example_of(spec: TensorSpec) -> dict[str, Any]:
    """One example of a tensor: the tensor without its first dimension."""
    return _tensor(TensorSpec(spec.name, spec.dtype, spec.shape[1:]))


def _instances(inputs: TensorSchema) -> dict[str, Any] | None:
    """``instances`` as MLflow's scoring server reads it for tensors: a list of ``{name: example}`` objects, each
    naming every input, or (a model of one tensor) the list of its examples, i.e. the tensor itself. None when a
    tensor has no first dimension, or two fix it to different sizes."""
    firsts = {t.shape[0] for t in inputs.tensors if t.shape and t.shape[0] is not None}
    if any(not t.shape for t in inputs.tensors) or len(firsts) > 1:
        return None
    count = {"minItems": next(iter(firsts)), "maxItems": next(iter(firsts))} if firsts else {}
    named = {"type": "array", **count, "description": "one {name: example} object per example",
             "items": {"type": "object", "properties": {t.name: _example_of(t) for t in inputs.tensors},
                       "required": inputs.names}}
    return {"anyOf": [_tensor(inputs.tensors[0]), named]} if len(inputs.tensors) == 1 else named


def _tensor_components(inputs: TensorSchema, outputs: TensorSchema, sample: Any) -> dict:
    named = {"type": "object", "properties": {t.name: _tensor(t) for t in inputs.tensors},
             "required": inputs.names}
    # a model of one tensor also takes that tensor itself: {"inputs": [[...], ...]}
    value = {"oneOf": [named, _tensor(inputs.tensors[0])]} if len(inputs.tensors) == 1 else named
    instances = _instances(inputs)
    request = _one_key_of({"inputs": value, **({} if instances is None else {"instances": instances})})
    return {
        "schemas": {
            "InvocationsRequest": request,
            "InvocationsResponse": {"type": "object", "required": ["predictions"], "properties": {
                "predictions": {"type": "object", "properties": {t.name: _tensor(t, output=True)
                                                                  for t in outputs.tensors}}}},
        },
        "example": {"inputs": tensors_to_json(sample) if sample is not None else
                    {t.name: _synthetic_tensor(t) for t in inputs.tensors}},
        "csv_example": None,
    }


_ERROR = {
    "type": "object", "required": ["error_code", "message"],
    "properties": {
        "error_code": {"type": "string", "enum": ["BAD_REQUEST", "SCHEMA_ERROR", "PAYLOAD_TOO_LARGE", "TOO_MANY_ROWS",
                                                  "UNSUPPORTED_MEDIA_TYPE", "PREDICT_ERROR", "SERIALIZE_ERROR",
                                                  "PARSER_UNAVAILABLE", "NOT_FOUND", "METHOD_NOT_ALLOWED"]},
        "message": {"type": "string"},
        "error": {"type": "string", "description": "the message again (the V2 protocol's error form)"},
        "field": {"type": "string", "description": "the input or field at fault"},
        "limit": {"type": "string", "enum": ["PYML_MAX_BODY_BYTES", "PYML_MAX_ROWS", "PYML_MAX_COLUMNS",
                                             "PYML_MAX_DEPTH"],
                  "description": "the setting of the request limit the request is beyond (see the description)"},
        "problems": {"type": "array", "items": {"type": "object", "properties": {
            "field": {"type": "string"}, "error": {"type": "string"},
            "rule": {"type": "string", "enum": [r.id for r in CROSS_FIELD_RULES]}}}},
        "error_id": {"type": "string", "description": "find the traceback in the server log with it"},
        "rule": {"type": "string", "enum": [r.id for r in CROSS_FIELD_RULES],
                 "description": "the rule spanning fields the request breaks (see the operation's description)"},
    },
}

_V2_SHAPE = {"type": "array", "items": {"type": "integer", "minimum": 0}}
_V2_DATATYPE = {"type": "string", "enum": list(dict.fromkeys(V2_DATATYPES.values()))}


def _v2_input(name: Any, value: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "required": ["name", "shape", "datatype", "data"], "properties": {
        "name": name, "shape": _V2_SHAPE, "datatype": _V2_DATATYPE,
        "data": {"type": "array", "description": "the values, flat in row-major order", "items": value},
        "parameters": {"type": "object"}}}


def _v2_request(info: Any) -> dict[str, Any]:
    """A V2 request: each input the model takes (its name and value type), or another one (skipped)."""
    specs = info.input_schema.columns if info.kind == "dataframe" else info.input_schema.tensors
    names = [spec.name for spec in specs]
    inputs = [_v2_input({"type": "string", "enum": [spec.name]},
                        _column(spec) if info.kind == "dataframe" else _tensor_value(spec.dtype)) for spec in specs]
    inputs.append(_v2_input({"type": "string", "not": {"enum": names}, "description": "not an input of the model: "
                             "skipped"}, {}))
    return {"type": "object", "required": ["inputs"], "properties": {
        "id": {"type": "string"},
        "inputs": {"type": "array", "items": {"anyOf": inputs}},
        "outputs": {"type": "array", "items": {"type": "object", "required": ["name"], "properties": {
            "name": {"type": "string", "enum": info.output_schema.names}, "parameters": {"type": "object"}}}},
        "parameters": {"type": "object"}}}


def _error_responses(*statuses: int) -> dict:
    text = {400: "malformed request", 404: "unknown model", 413: "body too large", 415: "unsupported content type",
            422: "the data does not match the input schema (see problems)", 500: "the model raised (see error_id)",
            503: "the process reading large requests stopped while reading this one: retry"}
    return {str(s): {"description": text[s], "content": {"application/json": {
        "schema": {"$ref": "#/components/schemas/Error"}}}} for s in statuses}


def limits_text(limits: Limits, declared: int) -> str:
    """The request limits as one sentence, for the document's descriptions."""
    return (f"Limits (a request beyond one is refused naming the setting in 'limit'): a body of at most "
            f"{limits.max_body_bytes} bytes (PYML_MAX_BODY_BYTES, 413); at most {limits.max_rows} rows: records, "
            f"instances, CSV lines, a tensor's or V2 input's first dimension (PYML_MAX_ROWS, 413); at most "
            f"{max(limits.max_columns, declared)} columns or keys in a record, a CSV header, 'dataframe_split', "
            f"'inputs' (PYML_MAX_COLUMNS, 400); JSON nested at most {limits.max_depth} deep (PYML_MAX_DEPTH, 400).")


def openapi_document(info: Any, *, model_name: str, model_version: str | None, sample: Any = None,
                     limits: Limits = DEFAULT_LIMITS) -> dict:
    """The OpenAPI 3.0 document for a loaded package's :class:`~pyml_jupyter.serving.loader.PackageInfo`.

    The request examples are ``sample`` when given (the server passes the package's sample only with
    ``PYML_OPENAPI_SAMPLE=1``: it is real data), else synthesized from the input schema. The descriptions
    state the rules spanning fields and the server's ``limits``."""
    if info.kind == "dataframe":
        parts = _dataframe_components(info.input_schema, info.output_schema, sample)
    else:
        parts = _tensor_components(info.input_schema, info.output_schema, sample)
    schemas = dict(parts["schemas"], Error=_ERROR, V2Request=_v2_request(info))
    json_content: dict[str, Any] = {"schema": {"$ref": "#/components/schemas/InvocationsRequest"}}
    if parts["example"] is not None:
        json_content["example"] = parts["example"]
    request_content = {"application/json": json_content}
    if info.kind == "dataframe":
        csv: dict[str, Any] = {"schema": {"type": "string", "description": "CSV with a header row: "
                                          + ", ".join(info.input_schema.names)}}
        if parts["csv_example"] is not None:
            csv["example"] = parts["csv_example"]
        request_content["text/csv"] = csv
    v2_path = f"/v2/models/{model_name}"
    simple = {"200": {"description": "OK"}}
    doc = {
        "openapi": "3.0.3",
        "info": {"title": f"{model_name}", "version": str(model_version or "0"),
                 "description": f"{info.kind} model {info.class_name}, served by pyml_jupyter"},
        "paths": {
            "/invocations": {"post": {
                "summary": "Predict (MLflow scoring protocol)",
                "description": rules_text() + " " + limits_text(limits, len(info.input_schema)),
                "operationId": "invocations",
                "requestBody": {"required": True, "content": request_content},
                "responses": {"200": {"description": "predictions", "content": {"application/json": {
                    "schema": {"$ref": "#/components/schemas/InvocationsResponse"}}}},
                    **_error_responses(400, 413, 415, 422, 500, 503)},
            }},
            f"{v2_path}/infer": {"post": {
                "summary": "Predict (Open Inference Protocol, KServe V2)",
                "description": "JSON as below; or the binary tensor data extension: this JSON (inputs with "
                               "parameters.binary_data_size instead of data) followed by the inputs' raw bytes, "
                               "its length in the Inference-Header-Content-Length header. Outputs come back in "
                               "binary when asked (parameters.binary_data_output, or an output's "
                               "parameters.binary_data). " + rules_text() + " "
                               + limits_text(limits, len(info.input_schema)),
                "operationId": "infer",
                "requestBody": {"required": True, "content": {"application/json": {"schema": {
                    "$ref": "#/components/schemas/V2Request"}}}},
                "responses": {"200": {"description": "outputs"}, **_error_responses(400, 404, 413, 422, 500, 503)},
            }},
            v2_path: {"get": {"summary": "Model metadata (V2)", "operationId": "modelMetadata", "responses": simple}},
            f"{v2_path}/ready": {"get": {"summary": "Model ready (V2)", "operationId": "modelReady",
                                         "responses": simple}},
            "/v2": {"get": {"summary": "Server metadata (V2)", "operationId": "serverMetadata", "responses": simple}},
            "/v2/health/live": {"get": {"summary": "Live (V2)", "operationId": "serverLive", "responses": simple}},
            "/v2/health/ready": {"get": {"summary": "Ready (V2)", "operationId": "serverReady", "responses": simple}},
            "/ping": {"get": {"summary": "Health (MLflow)", "operationId": "ping", "responses": simple}},
            "/health": {"get": {"summary": "Health", "operationId": "health", "responses": simple}},
            "/metadata": {"get": {"summary": "The model's contract", "operationId": "metadata", "responses": simple}},
            "/metrics": {"get": {"summary": "Prometheus metrics", "operationId": "metrics", "responses": simple}},
        },
        "components": {"schemas": schemas},
    }
    return _clean(doc)
