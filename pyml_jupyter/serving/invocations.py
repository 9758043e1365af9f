"""MLflow's scoring protocol, ``POST /invocations``: request bytes in, response bytes out (see :mod:`.scoring`).

This module is part of the serving runtime: stdlib, numpy and pandas only (besides the runtime's own modules).
"""

from __future__ import annotations

import io
from typing import Any, Mapping

import numpy as np
import pandas as pd

from .answers import Answer, ScoringError, Timer, error_body, guard, parse_json, predict
from .jsonio import dumps
from .loader import LoadedModel
from .schema import (
    DataFrameSchema,
    SchemaError,
    TensorSchema,
    dataframe_from_json,
    dataframe_to_records,
    tensors_from_json,
    tensors_to_json,
)

__all__ = ["invocations", "read_invocations", "write_invocations", "parse_invocations", "predictions_json",
           "CONTENT_TYPE_JSON", "CONTENT_TYPE_CSV", "INVOCATIONS_KEYS"]

CONTENT_TYPE_JSON = "application/json"
CONTENT_TYPE_CSV = "text/csv"
INVOCATIONS_KEYS = ("dataframe_split", "dataframe_records", "instances", "inputs")


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
    timer = Timer(timings)
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
    payload = parse_json(body)
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
    return guard(parse_invocations, "parse", model, body, content_type, timings)


def write_invocations(output: Any, timings: dict[str, float] | None = None) -> bytes:
    """:func:`predictions_json`, timed, with an unexpected failure turned into a 500 (raises ScoringError)."""
    timer = Timer(timings)
    payload = guard(predictions_json, "serialize", output)
    timer.lap("serialize")
    return payload


def invocations(model: LoadedModel, body: bytes, content_type: str | None,
                timings: dict[str, float] | None = None) -> Answer:
    """Answer an ``/invocations`` request: ``(status, JSON body, error code)``. Never raises.

    ``timings``, if given, receives the seconds spent per phase (parse, validate, predict, serialize).
    """
    try:
        data = read_invocations(model, body, content_type, timings)
        timer = Timer(timings)
        output = predict(model, data)
        timer.lap("predict")
        return Answer(200, write_invocations(output, timings))
    except ScoringError as exc:
        return Answer(exc.status, error_body(exc), exc.error_code)
