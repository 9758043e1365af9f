"""MLflow's scoring protocol, ``POST /invocations``: request bytes in, response bytes out (see :mod:`.scoring`).

This module is part of the serving runtime: stdlib, numpy and pandas only (besides the runtime's own modules).
"""

from __future__ import annotations

import base64
import csv
import io
from typing import Any, Mapping

import numpy as np
import pandas as pd

from .answers import Answer, ScoringError, Timer, error_body, guard, parse_json, predict
from .csv_rows import first_wide_row
from .jsonio import dumps
from .limits import DEFAULT_LIMITS, Limits
from .loader import LoadedModel
from .rules import CSV, EVERY_TENSOR, SPLIT_ROW_TYPES
from .schema import (
    DataFrameSchema,
    FrameColumns,
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


def _parse_csv(body: bytes, schema: DataFrameSchema, limits: Limits) -> pd.DataFrame:
    """The schema's columns of a CSV body (the others are tokenized, never converted), at most
    ``max_rows + 1`` rows read; the header's width and the row count are checked against the limits, and a row
    wider than the header is a 400 (the ``csv`` rule; ``mlflow models serve`` refuses it too)."""
    # Text-like columns are read as text, so "007" stays "007" and the schema decides what the rest mean.
    text_like = {c.name: object for c in schema.columns if c.dtype in ("string", "binary", "datetime", "object")}
    wanted = set(schema.names)
    try:
        limits.check_columns(_header_width(body), "the CSV header", len(schema))
        wide = first_wide_row(body)
        if wide is not None:  # pandas, building only the schema's columns, would drop the values past the header
            raise ScoringError.bad_request(f"The CSV body's line {wide.line} has {wide.values} values, more than "
                                           f"the {wide.header} columns of its header", rule=CSV)
        frame = pd.read_csv(io.BytesIO(body), dtype=text_like or None, usecols=lambda c: c in wanted,
                            nrows=limits.max_rows + 1)
    except pd.errors.EmptyDataError:
        raise ScoringError.bad_request("The body is not valid CSV with a header row: it is empty", rule=CSV) from None
    except (ValueError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise ScoringError.bad_request(f"The body is not valid CSV with a header row: {exc}", rule=CSV) from None
    limits.check_rows(len(frame))
    return _as_json_reads_it(frame, schema)


def _as_json_reads_it(frame: pd.DataFrame, schema: DataFrameSchema) -> pd.DataFrame:
    """A CSV body's columns as a JSON body's would be: a nullable column the header omits is all missing, a
    binary column's text is base64 (a 422 naming the column when it is not)."""
    for spec in schema.columns:
        if spec.name not in frame.columns and spec.nullable:
            frame[spec.name] = pd.Series([None] * len(frame), dtype=object, index=frame.index)
        elif spec.dtype == "binary" and spec.name in frame.columns:
            try:
                frame[spec.name] = [base64.b64decode(v, validate=True) if isinstance(v, str) else v
                                    for v in frame[spec.name]]
            except ValueError:
                raise ScoringError.from_schema_error(SchemaError([{
                    "field": spec.name, "error": f"column '{spec.name}' is declared binary but holds strings that "
                                                 f"are not base64"}]), rule=CSV) from None
    return frame


def _header_width(body: bytes) -> int:
    """The fields of a CSV body's first line, counted by the csv module in linear time (pandas takes
    minutes over a header of 100k columns)."""
    ends = [i for i in (body.find(b"\n"), body.find(b"\r")) if i >= 0]  # pandas ends a line at either
    first = body[: min(ends)] if ends else body
    try:
        return len(next(csv.reader([first.decode("utf-8", "replace")]), []))
    except csv.Error:  # e.g. a NUL byte: pandas refuses the body next, with its own message
        return first.count(b",") + 1


def _check_records(value: list, limits: Limits, declared: int) -> None:
    """Rows and the widest record of a list of records (its keys counted, not gathered)."""
    limits.check_rows(len(value))
    widest = max((len(r) for r in value if isinstance(r, (dict, Mapping))), default=0)
    limits.check_columns(widest, "a record", declared)


def _check_columns_form(value: Mapping, limits: Limits, declared: int) -> None:
    """Columns and rows of the ``{column: [values]}`` form (rows: its longest list)."""
    limits.check_columns(len(value), "the {column: [values]} object", declared)
    limits.check_rows(max((len(v) for v in value.values() if isinstance(v, list)), default=0))


def _frame_input(model: LoadedModel, key: str, value: Any, limits: Limits) -> pd.DataFrame | FrameColumns:
    schema = model.info.input_schema
    declared = len(schema)
    if key == "dataframe_split":
        if not isinstance(value, Mapping) or "data" not in value:
            raise ScoringError.bad_request("'dataframe_split' must be an object with 'columns' and 'data'")
        if isinstance(value.get("columns"), list):
            limits.check_columns(len(value["columns"]), "'dataframe_split'", declared)
        if isinstance(value["data"], list):
            limits.check_rows(len(value["data"]))
        if "columns" not in value:  # positional, as pandas' split orientation allows
            value = {"columns": schema.names, "data": value["data"]}
        else:
            value = {k: v for k, v in value.items() if k in ("columns", "data")}
    elif key == "dataframe_records" and not isinstance(value, list):
        raise ScoringError.bad_request("'dataframe_records' must be a list of {column: value} objects")
    elif key in ("instances", "inputs") and not isinstance(value, (list, Mapping)):
        raise ScoringError.bad_request(f"'{key}' must be a list of records or a {{column: [values]}} object")
    if isinstance(value, list):
        _check_records(value, limits, declared)
    elif key != "dataframe_split":
        _check_columns_form(value, limits, declared)
    return dataframe_from_json(value, schema, as_columns=True)


def _tensor_input(model: LoadedModel, key: str, value: Any, limits: Limits) -> dict[str, np.ndarray]:
    schema: TensorSchema = model.info.input_schema
    if key == "instances":
        value = _instances(value, schema, limits)
    elif key != "inputs":
        raise ScoringError.bad_request(f"This model takes tensors ({', '.join(schema.names)}): send "
                                       f"{{\"inputs\": {{name: nested list}}}}, not '{key}'")
    elif isinstance(value, Mapping):
        limits.check_columns(len(value), "'inputs'", len(schema))
        limits.check_rows(max((len(v) for v in value.values() if isinstance(v, list)), default=0))
    elif isinstance(value, list):
        limits.check_rows(len(value))
    return tensors_from_json(_empty_as_zero_rows(value, schema), schema)


def _instances(value: Any, schema: TensorSchema, limits: Limits) -> dict[str, list]:
    """The tensors of ``{"instances": ...}`` as MLflow's scoring server reads them: a list of ``{name: example}``
    objects, each naming every input (one example of each tensor: the tensor without its first dimension), or,
    for a model of one tensor, the list of its examples (the tensor itself)."""
    if not isinstance(value, list):
        raise ScoringError.bad_request("'instances' must be a list of examples")
    limits.check_rows(len(value))
    if not value:
        return {name: [] for name in schema.names}
    if all(isinstance(v, (dict, Mapping)) for v in value):  # [{name: example}, ...]
        limits.check_columns(max(map(len, value)), "an instance", len(schema))
        problems = []
        for name in schema.names:  # only the schema's names are gathered
            lacking = next((i for i, v in enumerate(value) if name not in v), None)
            if lacking is not None:
                problems.append({"field": name, "error": f"instance {lacking} has no tensor '{name}'; every "
                                                         f"instance names every input", "rule": EVERY_TENSOR})
        if problems:
            raise SchemaError(problems)
        return {name: [v[name] for v in value] for name in schema.names}
    if len(schema) == 1:  # [example, ...] for a single-input model
        return {schema.names[0]: value}
    raise ScoringError.bad_request(f"This model has several inputs ({', '.join(schema.names)}): each of "
                                   f"'instances' must be a {{name: value}} object")


def _empty_as_zero_rows(value: Any, schema: TensorSchema) -> Any:
    """JSON's ``[]`` for a tensor: zero rows of its shape, a free dimension 0 (``[]`` alone has shape ``(0,)``
    and reads as float64, so zero rows of a tensor of rank 2 or more, or of strings, could not be sent
    otherwise)."""
    if not isinstance(value, Mapping):
        value = {schema.names[0]: value} if len(schema) == 1 else value
        if not isinstance(value, Mapping):
            return value
    out = dict(value)
    for spec in schema.tensors:
        if out.get(spec.name) == [] and spec.shape:
            out[spec.name] = np.zeros((0, *(d or 0 for d in spec.shape[1:])),
                                      dtype=object if spec.dtype == "string" else spec.dtype)
    return out


def parse_invocations(model: LoadedModel, body: bytes, content_type: str | None,
                      timings: dict[str, float] | None = None, limits: Limits = DEFAULT_LIMITS) -> Any:
    """The model's input from an ``/invocations`` request: schema enforced, ready for ``predict`` (a JSON
    DataFrame as its validated :class:`~.schema.FrameColumns` when it takes the fast path); the request's rows,
    columns and nesting within ``limits``."""
    timer = Timer(timings)
    mime = _media_type(content_type)
    if mime == CONTENT_TYPE_CSV:
        if model.kind != "dataframe":
            raise ScoringError(415, "UNSUPPORTED_MEDIA_TYPE", "This model takes tensors: send application/json")
        frame = _parse_csv(body, model.info.input_schema, limits)
        timer.lap("parse")
        try:
            data = model.enforce(frame)
        except SchemaError as exc:
            raise ScoringError.from_schema_error(exc, rule=CSV) from None
        timer.lap("validate")
        return data
    limits.check_depth(body)
    payload = parse_json(body)
    if not isinstance(payload, dict):
        raise ScoringError.bad_request(f"The JSON body must be an object with one of the keys "
                                       f"{', '.join(INVOCATIONS_KEYS)}; got a {type(payload).__name__}")
    keys = [k for k in INVOCATIONS_KEYS if k in payload]
    if len(keys) != 1:
        found = ", ".join(map(repr, list(payload)[:10])) or "none"
        raise ScoringError.bad_request(f"The JSON body must have exactly one of the keys "
                                       f"{', '.join(INVOCATIONS_KEYS)}; found {found}"
                                       f"{' and more' if len(payload) > 10 else ''}")
    timer.lap("parse")
    key = keys[0]
    try:
        if model.kind == "dataframe":
            data = _frame_input(model, key, payload[key], limits)
        else:
            data = _tensor_input(model, key, payload[key], limits)
    except SchemaError as exc:
        raise ScoringError.from_schema_error(exc, rule=SPLIT_ROW_TYPES if key == "dataframe_split" else None) \
            from None
    timer.lap("validate")
    return data


def predictions_json(output: Any) -> bytes:
    """``{"predictions": ...}`` as MLflow writes it: DataFrame -> records, dict of arrays -> {name: lists}."""
    if isinstance(output, pd.DataFrame):
        predictions: Any = dataframe_to_records(output, allow_nan=True)
    elif isinstance(output, pd.Series):
        predictions = dataframe_to_records(output.to_frame(), allow_nan=True)
    elif isinstance(output, Mapping):
        predictions = tensors_to_json(output, allow_nan=True)
    elif isinstance(output, np.ndarray):
        predictions = tensors_to_json({"_": output}, allow_nan=True)["_"]
    else:
        raise ScoringError(500, "PREDICT_ERROR", f"The model's predict() returned a {type(output).__name__}; "
                                                 f"it must return a DataFrame or a dict of numpy arrays")
    return dumps({"predictions": predictions})


def read_invocations(model: LoadedModel, body: bytes, content_type: str | None,
                     timings: dict[str, float] | None = None, limits: Limits = DEFAULT_LIMITS) -> Any:
    """:func:`parse_invocations`, with an unexpected failure of the parser turned into a 400 (raises ScoringError)."""
    return guard(parse_invocations, "parse", model, body, content_type, timings, limits)


def write_invocations(output: Any, timings: dict[str, float] | None = None) -> bytes:
    """:func:`predictions_json`, timed, with an unexpected failure turned into a 500 (raises ScoringError)."""
    timer = Timer(timings)
    payload = guard(predictions_json, "serialize", output)
    timer.lap("serialize")
    return payload


def invocations(model: LoadedModel, body: bytes, content_type: str | None,
                timings: dict[str, float] | None = None, limits: Limits = DEFAULT_LIMITS) -> Answer:
    """Answer an ``/invocations`` request: ``(status, JSON body, error code)``. Never raises.

    ``timings``, if given, receives the seconds spent per phase (parse, validate, predict, serialize).
    """
    try:
        if len(body) > limits.max_body_bytes:
            raise limits.too_large(len(body))
        data = read_invocations(model, body, content_type, timings, limits)
        timer = Timer(timings)
        output = predict(model, data)
        timer.lap("predict")
        return Answer(200, write_invocations(output, timings))
    except ScoringError as exc:
        return Answer(exc.status, error_body(exc), exc.error_code)
