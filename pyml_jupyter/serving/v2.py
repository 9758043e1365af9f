"""The Open Inference Protocol (KServe V2) over HTTP: ``POST /v2/models/{name}/infer`` (see :mod:`.scoring`).

The request parser and :func:`v2_input` are shared with the gRPC face. This module is part of the serving
runtime: stdlib, numpy and pandas only (besides the runtime's own modules).
"""

from __future__ import annotations

import math
from typing import Any, Mapping

import numpy as np
import pandas as pd

from .answers import Answer, ScoringError, Timer, error_body, guard, parse_json, predict
from .jsonio import dumps
from .limits import DEFAULT_LIMITS, Limits
from .loader import LoadedModel
from .rules import V2_DATA_COUNT, V2_ONCE, V2_SHAPE
from .schema import (SchemaError, dataframe_from_json, dataframe_to_json, frame_columns_from_arrays, json_array,
                     tensors_from_json, tensors_to_json)
from .v2_binary import attach_binary_inputs, binary_outputs

__all__ = ["infer_v2", "read_v2", "write_v2", "parse_v2", "v2_input", "v2_outputs", "requested_outputs", "v2_response",
           "v2_datatype", "V2_DATATYPES"]


# The V2 datatype of each schema dtype (tests/test_schema_tables.py checks that every dtype the schema accepts
# is here): numbers and bools by width, everything else travels as BYTES (JSON strings or values).
V2_DATATYPES: dict[str, str] = {
    "bool": "BOOL", "uint8": "UINT8", "uint16": "UINT16", "uint32": "UINT32", "uint64": "UINT64",
    "int8": "INT8", "int16": "INT16", "int32": "INT32", "int64": "INT64",
    "float16": "FP16", "float32": "FP32", "float64": "FP64",
    "string": "BYTES", "datetime": "BYTES", "binary": "BYTES", "object": "BYTES",
}
# A request's V2 datatype -> the numpy dtype its data is read as (BYTES: objects), in the order above.
_V2_TO_NUMPY = {**{v2: dtype for dtype, v2 in V2_DATATYPES.items() if v2 != "BYTES"}, "BYTES": "object"}


def v2_datatype(dtype: Any) -> str:
    """The V2 datatype of a schema dtype name or a numpy/pandas dtype (text, dates, bytes: ``BYTES``)."""
    name = getattr(dtype, "numpy_dtype", dtype)  # pandas nullable Int64 -> int64
    name = getattr(name, "name", name)
    if name == "boolean":
        name = "bool"
    return V2_DATATYPES.get(str(name), "BYTES")


def _flatten(data: Any) -> list:
    if not isinstance(data, list) or not data or not isinstance(data[0], list):
        return data
    out: list = []
    stack = [data]
    while stack:  # iterative, so a deeply nested payload cannot exhaust the recursion limit
        item = stack.pop()
        if isinstance(item, list):
            stack.extend(reversed(item))
        else:
            out.append(item)
    return out


def _v2_inputs(payload: Any) -> list[dict]:
    if not isinstance(payload, dict) or not isinstance(payload.get("inputs"), list):
        raise ScoringError.bad_request("The body must be a JSON object with an 'inputs' list of "
                                       "{name, shape, datatype, data} objects")
    inputs = payload["inputs"]
    seen = set()
    for i, item in enumerate(inputs):
        name = item.get("name") if isinstance(item, dict) else None
        where = f"input '{name}'" if isinstance(name, str) else f"inputs[{i}]"
        if not isinstance(name, str):
            raise ScoringError.bad_request(f"{where} needs a 'name' string", field=where)
        if name in seen:
            raise ScoringError.bad_request(f"{where} is given twice", field=name, rule=V2_ONCE)
        seen.add(name)
        shape = item.get("shape")
        if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0
                                                  for d in shape):
            raise ScoringError.bad_request(f"{where} needs a 'shape': a list of non-negative integers",
                                           field=name)
        if item.get("datatype") not in _V2_TO_NUMPY:
            raise ScoringError.bad_request(f"{where} has datatype {item.get('datatype')!r}; use one of "
                                           f"{', '.join(_V2_TO_NUMPY)}", field=name)
        if "data" not in item:
            raise ScoringError.bad_request(f"{where} needs 'data'", field=name)
        data = item["data"]  # JSON values, or a numpy array decoded from binary data (v2_binary.py)
        flat = data.reshape(-1) if isinstance(data, np.ndarray) else _flatten(data) if isinstance(data, list) \
            else [data]
        if len(flat) != math.prod(shape):
            raise ScoringError.bad_request(f"{where} has {len(flat)} values but its shape {shape} needs "
                                           f"{math.prod(shape)}", field=name, rule=V2_DATA_COUNT)
        item["_flat"] = flat
    return inputs


def parse_v2(model: LoadedModel, body: bytes, timings: dict[str, float] | None = None, *,
             json_length: int | None = None, limits: Limits = DEFAULT_LIMITS) -> tuple[Any, dict]:
    """The model's input from a V2 inference request, and the request (for its ``id`` and ``outputs``).
    With ``json_length`` (the ``Inference-Header-Content-Length``), the JSON is followed by the inputs' binary
    data (see v2_binary.py). The JSON's nesting, the inputs and their rows are checked against ``limits``."""
    timer = Timer(timings)
    text = body if json_length is None else body[:json_length]
    limits.check_depth(text)
    payload = parse_json(text)
    if isinstance(payload, dict) and isinstance(payload.get("inputs"), list):  # counted before any is read
        limits.check_columns(len(payload["inputs"]), "'inputs'", len(model.info.input_schema.names))
    if json_length is not None:
        attach_binary_inputs(payload, memoryview(body)[json_length:])
    inputs = _v2_inputs(payload)
    wanted = payload.get("outputs")
    if wanted is not None and not (isinstance(wanted, list) and all(isinstance(o, dict) and isinstance(
            o.get("name"), str) for o in wanted)):
        raise ScoringError.bad_request("'outputs' must be a list of {\"name\": ...} objects")
    timer.lap("parse")
    data = v2_input(model, inputs, limits)
    timer.lap("validate")
    return data, payload


def v2_input(model: LoadedModel, inputs: list[dict], limits: Limits = DEFAULT_LIMITS) -> Any:
    """The model's input, schema enforced, from V2 input tensors ``{"name", "shape", "datatype", "_flat"}``
    whose flat values are a list (JSON) or a numpy array (gRPC); a DataFrame model's input may come back as its
    validated :class:`~.schema.FrameColumns` (see :func:`~.schema.dataframe_from_json`). Raises
    :class:`ScoringError` (400, 413, 422).

    The number of inputs and their first dimension are checked against ``limits``; inputs the schema does
    not name are skipped (never converted)."""
    declared = model.info.input_schema.names
    limits.check_columns(len(inputs), "'inputs'", len(declared))
    limits.check_rows(max((item["shape"][0] for item in inputs if item["shape"]), default=0))
    wanted = set(declared)
    inputs = [item for item in inputs if item["name"] in wanted]
    try:
        if model.kind == "dataframe":
            columns = {}
            for item in inputs:
                shape = item["shape"]
                if not (len(shape) == 1 or (len(shape) == 2 and shape[1] == 1)):
                    raise ScoringError.bad_request(f"input '{item['name']}' is a DataFrame column: its shape "
                                                   f"must be [n] or [n, 1], not {shape}", field=item["name"],
                                                   rule=V2_SHAPE)
                columns[item["name"]] = item["_flat"]
            # numpy columns (raw contents) already of the declared dtypes are taken as they are; anything else
            # is validated as the JSON values would be
            fast = frame_columns_from_arrays(model.info.input_schema, columns)
            if fast is not None:
                return fast
            columns = {name: flat.tolist() if isinstance(flat, np.ndarray) else flat for name, flat in columns.items()}
            return dataframe_from_json(columns, model.info.input_schema, as_columns=True)
        tensors = {}
        specs = {spec.name: spec for spec in model.info.input_schema.tensors}
        shape_problems = [p for item in inputs if (p := specs[item["name"]].shape_problem(item["shape"]))]
        if shape_problems:  # before the data is shaped: a wrong shape may be too big for numpy to hold
            raise SchemaError(shape_problems)
        for item in inputs:
            # The values keep their JSON types; the schema (not the declared datatype) decides the
            # casts, so INT64 data of 1.5 (or true) is refused rather than truncated (or read as 1).
            try:
                flat = item["_flat"]
                dtype = specs[item["name"]].dtype
                arr = _object_array(flat) if item["datatype"] == "BYTES" else json_array(flat, dtype)
                tensors[item["name"]] = arr.reshape(item["shape"])
            except (ValueError, TypeError, OverflowError) as exc:
                raise SchemaError([{"field": item["name"], "error": f"input '{item['name']}' cannot be read "
                                    f"as {item['datatype']}: {exc}"}]) from None
        return tensors_from_json(tensors, model.info.input_schema)
    except SchemaError as exc:
        raise ScoringError.from_schema_error(exc) from None


def _object_array(values: list) -> np.ndarray:
    arr = np.empty(len(values), dtype=object)
    arr[:] = values
    return arr


def requested_outputs(outputs: list[dict], names: list[str]) -> list[dict]:
    """The outputs a request names, in its order (all of them when it names none); an unknown name is a 400."""
    if not names:
        return outputs
    by_name = {o["name"]: o for o in outputs}
    unknown = [n for n in names if n not in by_name]
    if unknown:
        raise ScoringError.bad_request(f"unknown output {unknown[0]!r}; the model returns {', '.join(by_name)}",
                                       field=unknown[0])
    return [by_name[n] for n in names]


def numeric_outputs(output: Any) -> list[dict] | None:
    """A DataFrame whose columns are all numpy numbers or booleans as V2 output tensors whose ``data`` is each
    column's array (for raw contents: no JSON values on the way); ``None`` for any other output."""
    if isinstance(output, pd.Series):
        output = output.to_frame()
    if not isinstance(output, pd.DataFrame) or output.shape[1] == 0:
        return None
    n = len(output)
    column = getattr(output, "_get_column_array", None)  # pandas 1.4+: no Series per column
    outputs = []
    for j, name in enumerate(output.columns):
        array = column(j) if column is not None else output.iloc[:, j].to_numpy()
        if not isinstance(array, np.ndarray) or array.dtype.kind not in "biuf":
            return None
        datatype = _NUMERIC_DATATYPES.get(array.dtype)
        if datatype is None:
            datatype = _NUMERIC_DATATYPES[array.dtype] = v2_datatype(array.dtype)
        outputs.append({"name": str(name), "datatype": datatype, "shape": [n], "data": array})
    return outputs


_NUMERIC_DATATYPES: dict[np.dtype, str] = {}


def v2_outputs(model: LoadedModel, output: Any) -> list[dict]:
    """The model's output as V2 output tensors: ``[{"name", "datatype", "shape", "data" (flat, JSON-ready)}]``."""
    if isinstance(output, pd.Series):
        output = output.to_frame()
    if isinstance(output, pd.DataFrame):
        split = dataframe_to_json(output, allow_nan=True)
        n = len(output)
        return [{"name": name, "datatype": v2_datatype(output.dtypes.iloc[j]), "shape": [n],
                 "data": [row[j] for row in split["data"]]} for j, name in enumerate(split["columns"])]
    if isinstance(output, np.ndarray):
        output = {"output": output}
    if isinstance(output, Mapping):
        out = []
        for name, value in output.items():
            arr = np.asarray(value)
            out.append({"name": str(name), "datatype": v2_datatype(arr.dtype), "shape": list(arr.shape),
                        "data": tensors_to_json({"_": arr.reshape(-1)}, allow_nan=True)["_"]})
        return out
    raise ScoringError(500, "PREDICT_ERROR", f"The model's predict() returned a {type(output).__name__}; it "
                                             f"must return a DataFrame or a dict of numpy arrays")


def v2_response(model: LoadedModel, output: Any, request: Mapping, *, model_name: str,
                model_version: str | None) -> bytes:
    """The JSON answer to a V2 request."""
    return dumps(v2_response_dict(model, output, request, model_name=model_name, model_version=model_version))


def v2_response_dict(model: LoadedModel, output: Any, request: Mapping, *, model_name: str,
                     model_version: str | None) -> dict:
    """The answer to a V2 request as a dict: the outputs it asks for (all by default), its ``id``."""
    outputs = requested_outputs(v2_outputs(model, output), [o["name"] for o in request.get("outputs") or ()])
    response: dict[str, Any] = {"model_name": model_name}
    if model_version is not None:
        response["model_version"] = str(model_version)
    if request.get("id") is not None:
        response["id"] = request["id"]
    response["outputs"] = outputs
    return response


def read_v2(model: LoadedModel, body: bytes, timings: dict[str, float] | None = None, *,
            json_length: int | None = None, limits: Limits = DEFAULT_LIMITS) -> tuple[Any, dict]:
    """:func:`parse_v2`, with an unexpected failure of the parser turned into a 400 (raises ScoringError)."""
    return guard(lambda: parse_v2(model, body, timings, json_length=json_length, limits=limits), "parse")


def write_v2(model: LoadedModel, output: Any, request: Mapping, *, model_name: str, model_version: str | None,
             timings: dict[str, float] | None = None) -> Answer:
    """The 200 answer: JSON, or JSON then the binary outputs the request asks for (``json_length`` set, see
    v2_binary.py); timed, with an unexpected failure turned into a 500 (raises ScoringError)."""
    timer = Timer(timings)

    def answer() -> Answer:
        response = v2_response_dict(model, output, request, model_name=model_name, model_version=model_version)
        binary = binary_outputs(response, request)
        return Answer(200, dumps(response)) if binary is None else Answer(200, binary[0], json_length=binary[1])

    payload = guard(answer, "serialize")
    timer.lap("serialize")
    return payload


def infer_v2(model: LoadedModel, body: bytes, *, model_name: str, model_version: str | None = None,
             timings: dict[str, float] | None = None, limits: Limits = DEFAULT_LIMITS) -> Answer:
    """Answer a V2 ``infer`` request: ``(status, JSON body, error code)``. Never raises."""
    try:
        if len(body) > limits.max_body_bytes:
            raise limits.too_large(len(body))
        data, request = read_v2(model, body, timings, limits=limits)
        timer = Timer(timings)
        output = predict(model, data)
        timer.lap("predict")
        return write_v2(model, output, request, model_name=model_name, model_version=model_version, timings=timings)
    except ScoringError as exc:
        return Answer(exc.status, error_body(exc, v2=True), exc.error_code)
