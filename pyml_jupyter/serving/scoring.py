"""The scoring protocols, independent of any web framework: request bytes in, response bytes out.

Two protocols, both served by :mod:`pyml_jupyter.serving.app`:

**MLflow's** ``POST /invocations`` (what ``mlflow models serve`` speaks, so MLflow clients work unchanged):

* ``application/json`` with exactly one of ``{"dataframe_split": {"columns": [...], "data": [[...]]}}``,
  ``{"dataframe_records": [{col: value}, ...]}``, ``{"instances": ...}`` or ``{"inputs": ...}``. For a
  DataFrame model ``instances``/``inputs`` hold a list of records or a ``{column: [values]}`` mapping; for a
  tensor model ``inputs`` holds ``{name: nested list}`` (or a bare nested list when the model has one input)
  and ``instances`` a list of examples (``{name: value}`` each, or bare values for one input).
* ``text/csv`` with a header row (DataFrame models).
* Response ``{"predictions": [{col: value}, ...]}`` for a DataFrame (pandas' ``records`` orientation, as
  MLflow) and ``{"predictions": {name: nested list}}`` for tensors.

**The Open Inference Protocol** (KServe V2) ``POST /v2/models/{name}/infer``: ``{"id"?, "inputs": [{"name",
"shape", "datatype", "data"}], "outputs"?: [{"name"}]}``, answered with ``{"model_name", "model_version",
"id", "outputs": [{"name", "shape", "datatype", "data"}]}`` (``data`` flat, row-major). A DataFrame model
takes one input per column, of shape ``[n]`` or ``[n, 1]``, and returns one output per column.

Every request goes through four timed phases (``parse``: bytes to JSON/CSV values; ``validate``: values to the
model's input, with the input schema enforced by :mod:`~pyml_jupyter.serving.schema`; ``predict``;
``serialize``). Failures become a :class:`ScoringError` with an HTTP status and a JSON body::

    400 BAD_REQUEST             malformed JSON/CSV, or a payload in none of the accepted forms
    415 UNSUPPORTED_MEDIA_TYPE  a content type other than application/json or text/csv
    422 SCHEMA_ERROR            the data does not match the input schema; "problems" names each field
    500 PREDICT_ERROR           the model's own code raised; "error_id" finds the traceback in the log

This module is part of the serving runtime: stdlib, numpy and pandas only.
"""

from __future__ import annotations

import io
import json
import logging
import math
import time
import uuid
from typing import Any, Mapping, NamedTuple

import numpy as np
import pandas as pd

from .loader import LoadedModel
from .schema import (
    DataFrameSchema,
    SchemaError,
    TensorSchema,
    dataframe_from_json,
    dataframe_to_json,
    dataframe_to_records,
    tensors_from_json,
    tensors_to_json,
)

__all__ = [
    "Answer",
    "ScoringError",
    "invocations",
    "infer_v2",
    "read_invocations",
    "write_invocations",
    "read_v2",
    "write_v2",
    "v2_input",
    "v2_outputs",
    "parse_invocations",
    "parse_v2",
    "predict",
    "predictions_json",
    "v2_response",
    "v2_datatype",
    "V2_DATATYPES",
    "dumps",
    "loads",
    "error_body",
]

logger = logging.getLogger("pyml_jupyter.serving")

CONTENT_TYPE_JSON = "application/json"
CONTENT_TYPE_CSV = "text/csv"
INVOCATIONS_KEYS = ("dataframe_split", "dataframe_records", "instances", "inputs")

try:  # optional: orjson parses and writes JSON several times faster than the stdlib
    import orjson

    def loads(data: bytes | str) -> Any:
        return orjson.loads(data)

    def dumps(obj: Any) -> bytes:
        return orjson.dumps(obj, option=orjson.OPT_SERIALIZE_NUMPY)

    _JSON_ERRORS: tuple[type[Exception], ...] = (orjson.JSONDecodeError, UnicodeDecodeError)
except ImportError:  # pragma: no cover - depends on the environment
    # Without the check for circular references (~15% faster): what is written here is built by this runtime
    # (schema's JSON codec copies the model's values into fresh lists and dicts), so it has no cycles.
    _encoder = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, check_circular=False)

    def loads(data: bytes | str) -> Any:
        return json.loads(data)

    def dumps(obj: Any) -> bytes:
        return _encoder.encode(obj).encode("utf-8")

    _JSON_ERRORS = (json.JSONDecodeError, UnicodeDecodeError)


class Answer(NamedTuple):
    """A response: HTTP status, JSON body, and the error code when it is an error (for metrics)."""

    status: int
    body: bytes
    error_code: str | None = None


class ScoringError(Exception):
    """A request that cannot be answered with predictions: ``status``, ``error_code`` and a JSON form."""

    def __init__(self, status: int, error_code: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.error_code = error_code
        self.message = message
        self.extra = extra

    def to_dict(self) -> dict:
        return {"error_code": self.error_code, "message": self.message, **self.extra}

    @classmethod
    def bad_request(cls, message: str, **extra: Any) -> "ScoringError":
        return cls(400, "BAD_REQUEST", message, **extra)

    @classmethod
    def from_schema_error(cls, error: SchemaError) -> "ScoringError":
        return cls(422, "SCHEMA_ERROR", str(error), problems=error.problems)


def error_body(error: ScoringError, *, v2: bool = False) -> bytes:
    """The JSON body of an error. The V2 protocol's error object is ``{"error": message}``; ours adds fields."""
    body = error.to_dict()
    if v2:
        body = {"error": error.message, **body}
    return dumps(body)


# ------------------------------------------------------------------------------------------ phases


class _Timer:
    """Records the duration of consecutive phases into a dict (a no-op when given None)."""

    __slots__ = ("timings", "last")

    def __init__(self, timings: dict[str, float] | None) -> None:
        self.timings = timings
        self.last = time.perf_counter()

    def lap(self, phase: str) -> None:
        now = time.perf_counter()
        if self.timings is not None:
            self.timings[phase] = now - self.last
        self.last = now


def predict(model: LoadedModel, data: Any) -> Any:
    """The model's prediction on enforced input; anything the model raises becomes a 500 with an error id."""
    try:
        return model.predict_enforced(data)
    except Exception as exc:  # noqa: BLE001 - user code: any exception is a prediction error
        error_id = str(uuid.uuid4())
        logger.error("predict failed (error_id=%s)", error_id, exc_info=True)
        raise ScoringError(500, "PREDICT_ERROR", f"The model's predict() raised {type(exc).__name__}: {exc}",
                           error_id=error_id) from exc


def _media_type(content_type: str | None) -> str:
    if not content_type:
        return CONTENT_TYPE_JSON  # curl -d and many clients send none: read it as JSON
    mime, _, params = content_type.partition(";")
    mime = mime.strip().lower()
    charset = params.partition("charset=")[2].strip().strip('"').lower() if "charset=" in params else "utf-8"
    if mime not in (CONTENT_TYPE_JSON, CONTENT_TYPE_CSV):
        raise ScoringError(415, "UNSUPPORTED_MEDIA_TYPE",
                           f"Content type {content_type!r} is not supported; send application/json "
                           f"(dataframe_split, dataframe_records, instances or inputs) or text/csv")
    if charset not in ("utf-8", "utf8"):
        raise ScoringError(415, "UNSUPPORTED_MEDIA_TYPE", f"Charset {charset!r} is not supported; send UTF-8")
    return mime


def _parse_json(body: bytes) -> Any:
    try:
        return loads(body)
    except _JSON_ERRORS as exc:
        raise ScoringError.bad_request(f"The body is not valid JSON: {exc}") from None


# ---------------------------------------------------------------------------------- MLflow protocol


def _parse_csv(body: bytes, schema: DataFrameSchema) -> pd.DataFrame:
    # Text-like columns are read as text, so "007" stays "007" and the schema decides what the rest mean.
    text_like = {c.name: object for c in schema.columns if c.dtype in ("string", "binary", "datetime", "object")}
    try:
        return pd.read_csv(io.BytesIO(body), dtype=text_like or None)
    except (ValueError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise ScoringError.bad_request(f"The body is not valid CSV with a header row: {exc}") from None


def _frame_input(model: LoadedModel, key: str, value: Any) -> pd.DataFrame:
    schema = model.info.input_schema
    if key == "dataframe_split":
        if not isinstance(value, Mapping) or "data" not in value:
            raise ScoringError.bad_request("'dataframe_split' must be an object with 'columns' and 'data'")
        if "columns" not in value:  # positional, as pandas' split orientation allows
            value = {"columns": schema.names, "data": value["data"]}
        else:
            value = {k: v for k, v in value.items() if k in ("columns", "data")}
    elif key == "dataframe_records" and not isinstance(value, list):
        raise ScoringError.bad_request("'dataframe_records' must be a list of {column: value} objects")
    elif key in ("instances", "inputs") and not isinstance(value, (list, Mapping)):
        raise ScoringError.bad_request(f"'{key}' must be a list of records or a {{column: [values]}} object")
    return dataframe_from_json(value, schema)


def _tensor_input(model: LoadedModel, key: str, value: Any) -> dict[str, np.ndarray]:
    schema: TensorSchema = model.info.input_schema
    if key == "instances":
        if not isinstance(value, list):
            raise ScoringError.bad_request("'instances' must be a list of examples")
        if value and all(isinstance(v, Mapping) for v in value):  # [{name: example}, ...]
            names = list(dict.fromkeys(k for v in value for k in v))
            value = {n: [v.get(n) for v in value] for n in names}
        elif len(schema) == 1:  # [example, ...] for a single-input model
            value = {schema.names[0]: value}
        else:
            raise ScoringError.bad_request(f"This model has several inputs ({', '.join(schema.names)}): "
                                           f"each of 'instances' must be a {{name: value}} object")
    elif key != "inputs":
        raise ScoringError.bad_request(f"This model takes tensors ({', '.join(schema.names)}): send "
                                       f"{{\"inputs\": {{name: nested list}}}}, not '{key}'")
    return tensors_from_json(value, schema)


def parse_invocations(model: LoadedModel, body: bytes, content_type: str | None,
                      timings: dict[str, float] | None = None) -> Any:
    """The model's input from an ``/invocations`` request: schema enforced, ready for ``predict``."""
    timer = _Timer(timings)
    mime = _media_type(content_type)
    if mime == CONTENT_TYPE_CSV:
        if model.kind != "dataframe":
            raise ScoringError(415, "UNSUPPORTED_MEDIA_TYPE", "This model takes tensors: send application/json")
        frame = _parse_csv(body, model.info.input_schema)
        timer.lap("parse")
        try:
            data = model.enforce(frame)
        except SchemaError as exc:
            raise ScoringError.from_schema_error(exc) from None
        timer.lap("validate")
        return data
    payload = _parse_json(body)
    if not isinstance(payload, dict):
        raise ScoringError.bad_request(f"The JSON body must be an object with one of the keys "
                                       f"{', '.join(INVOCATIONS_KEYS)}; got a {type(payload).__name__}")
    keys = [k for k in INVOCATIONS_KEYS if k in payload]
    if len(keys) != 1:
        found = ", ".join(map(repr, payload)) or "none"
        raise ScoringError.bad_request(f"The JSON body must have exactly one of the keys "
                                       f"{', '.join(INVOCATIONS_KEYS)}; found {found}")
    timer.lap("parse")
    key = keys[0]
    try:
        if model.kind == "dataframe":
            data = _frame_input(model, key, payload[key])
        else:
            data = _tensor_input(model, key, payload[key])
    except SchemaError as exc:
        raise ScoringError.from_schema_error(exc) from None
    timer.lap("validate")
    return data


def predictions_json(output: Any) -> bytes:
    """``{"predictions": ...}`` as MLflow writes it: DataFrame -> records, dict of arrays -> {name: lists}."""
    if isinstance(output, pd.DataFrame):
        predictions: Any = dataframe_to_records(output)
    elif isinstance(output, pd.Series):
        predictions = dataframe_to_records(output.to_frame())
    elif isinstance(output, Mapping):
        predictions = tensors_to_json(output)
    elif isinstance(output, np.ndarray):
        predictions = tensors_to_json({"_": output})["_"]
    else:
        raise ScoringError(500, "PREDICT_ERROR", f"The model's predict() returned a {type(output).__name__}; "
                                                 f"it must return a DataFrame or a dict of numpy arrays")
    return dumps({"predictions": predictions})


def read_invocations(model: LoadedModel, body: bytes, content_type: str | None,
                     timings: dict[str, float] | None = None) -> Any:
    """:func:`parse_invocations`, with an unexpected failure of the parser turned into a 400 (raises ScoringError)."""
    return _guard(parse_invocations, "parse", model, body, content_type, timings)


def write_invocations(output: Any, timings: dict[str, float] | None = None) -> bytes:
    """:func:`predictions_json`, timed, with an unexpected failure turned into a 500 (raises ScoringError)."""
    timer = _Timer(timings)
    payload = _guard(predictions_json, "serialize", output)
    timer.lap("serialize")
    return payload


def invocations(model: LoadedModel, body: bytes, content_type: str | None,
                timings: dict[str, float] | None = None) -> Answer:
    """Answer an ``/invocations`` request: ``(status, JSON body, error code)``. Never raises.

    ``timings``, if given, receives the seconds spent per phase (parse, validate, predict, serialize).
    """
    try:
        data = read_invocations(model, body, content_type, timings)
        timer = _Timer(timings)
        output = predict(model, data)
        timer.lap("predict")
        return Answer(200, write_invocations(output, timings))
    except ScoringError as exc:
        return Answer(exc.status, error_body(exc), exc.error_code)


def _guard(function, phase: str, *args: Any) -> Any:
    """Run a parse or serialize step; an unexpected exception becomes a ScoringError, never a crash."""
    try:
        return function(*args)
    except ScoringError:
        raise
    except Exception as exc:  # noqa: BLE001
        error_id = str(uuid.uuid4())
        if phase == "parse":  # the input made the parser fail in a way it does not check for: the client's
            logger.warning("unreadable request (error_id=%s)", error_id, exc_info=True)
            raise ScoringError.bad_request(f"The request cannot be read: {type(exc).__name__}: {exc}",
                                           error_id=error_id) from exc
        logger.error("cannot serialize the prediction (error_id=%s)", error_id, exc_info=True)
        raise ScoringError(500, "SERIALIZE_ERROR", f"The prediction cannot be written as JSON: "
                                                   f"{type(exc).__name__}: {exc}", error_id=error_id) from exc


# ------------------------------------------------------------------------ Open Inference Protocol (V2)

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
            raise ScoringError.bad_request(f"{where} is given twice", field=name)
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
        flat = _flatten(item["data"]) if isinstance(item["data"], list) else [item["data"]]
        if len(flat) != math.prod(shape):
            raise ScoringError.bad_request(f"{where} has {len(flat)} values but its shape {shape} needs "
                                           f"{math.prod(shape)}", field=name)
        item["_flat"] = flat
    return inputs


def parse_v2(model: LoadedModel, body: bytes, timings: dict[str, float] | None = None) -> tuple[Any, dict]:
    """The model's input from a V2 inference request, and the request (for its ``id`` and ``outputs``)."""
    timer = _Timer(timings)
    payload = _parse_json(body)
    inputs = _v2_inputs(payload)
    wanted = payload.get("outputs")
    if wanted is not None and not (isinstance(wanted, list) and all(isinstance(o, dict) and isinstance(
            o.get("name"), str) for o in wanted)):
        raise ScoringError.bad_request("'outputs' must be a list of {\"name\": ...} objects")
    timer.lap("parse")
    data = v2_input(model, inputs)
    timer.lap("validate")
    return data, payload


def v2_input(model: LoadedModel, inputs: list[dict]) -> Any:
    """The model's input, schema enforced, from V2 input tensors ``{"name", "shape", "datatype", "_flat"}``
    whose flat values are a list (JSON) or a numpy array (gRPC). Raises :class:`ScoringError` (400, 422)."""
    try:
        if model.kind == "dataframe":
            columns = {}
            for item in inputs:
                shape = item["shape"]
                if not (len(shape) == 1 or (len(shape) == 2 and shape[1] == 1)):
                    raise ScoringError.bad_request(f"input '{item['name']}' is a DataFrame column: its shape "
                                                   f"must be [n] or [n, 1], not {shape}", field=item["name"])
                flat = item["_flat"]
                columns[item["name"]] = flat.tolist() if isinstance(flat, np.ndarray) else flat
            return dataframe_from_json(columns, model.info.input_schema)
        tensors = {}
        for item in inputs:
            # The values keep their JSON types; the schema (not the declared datatype) decides the
            # casts, so INT64 data of 1.5 is refused rather than truncated.
            try:
                flat = item["_flat"]
                arr = _object_array(flat) if item["datatype"] == "BYTES" else np.asarray(flat)
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


def v2_outputs(model: LoadedModel, output: Any) -> list[dict]:
    """The model's output as V2 output tensors: ``[{"name", "datatype", "shape", "data" (flat, JSON-ready)}]``."""
    if isinstance(output, pd.Series):
        output = output.to_frame()
    if isinstance(output, pd.DataFrame):
        split = dataframe_to_json(output)
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
                        "data": tensors_to_json({"_": arr.reshape(-1)})["_"]})
        return out
    raise ScoringError(500, "PREDICT_ERROR", f"The model's predict() returned a {type(output).__name__}; it "
                                             f"must return a DataFrame or a dict of numpy arrays")


def v2_response(model: LoadedModel, output: Any, request: Mapping, *, model_name: str,
                model_version: str | None) -> bytes:
    outputs = v2_outputs(model, output)
    wanted = request.get("outputs")
    if wanted:
        names = [o["name"] for o in wanted]
        by_name = {o["name"]: o for o in outputs}
        unknown = [n for n in names if n not in by_name]
        if unknown:
            raise ScoringError.bad_request(f"unknown output {unknown[0]!r}; the model returns "
                                           f"{', '.join(by_name)}", field=unknown[0])
        outputs = [by_name[n] for n in names]
    response: dict[str, Any] = {"model_name": model_name}
    if model_version is not None:
        response["model_version"] = str(model_version)
    if request.get("id") is not None:
        response["id"] = request["id"]
    response["outputs"] = outputs
    return dumps(response)


def read_v2(model: LoadedModel, body: bytes, timings: dict[str, float] | None = None) -> tuple[Any, dict]:
    """:func:`parse_v2`, with an unexpected failure of the parser turned into a 400 (raises ScoringError)."""
    return _guard(parse_v2, "parse", model, body, timings)


def write_v2(model: LoadedModel, output: Any, request: Mapping, *, model_name: str, model_version: str | None,
             timings: dict[str, float] | None = None) -> bytes:
    """:func:`v2_response`, timed, with an unexpected failure turned into a 500 (raises ScoringError)."""
    timer = _Timer(timings)
    payload = _guard(lambda: v2_response(model, output, request, model_name=model_name,
                                         model_version=model_version), "serialize")
    timer.lap("serialize")
    return payload


def infer_v2(model: LoadedModel, body: bytes, *, model_name: str, model_version: str | None = None,
             timings: dict[str, float] | None = None) -> Answer:
    """Answer a V2 ``infer`` request: ``(status, JSON body, error code)``. Never raises."""
    try:
        data, request = read_v2(model, body, timings)
        timer = _Timer(timings)
        output = predict(model, data)
        timer.lap("predict")
        return Answer(200, write_v2(model, output, request, model_name=model_name, model_version=model_version,
                                    timings=timings))
    except ScoringError as exc:
        return Answer(exc.status, error_body(exc, v2=True), exc.error_code)
