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

    400 BAD_REQUEST             malformed JSON/CSV, a payload in none of the accepted forms, or wider or
                                deeper than PYML_MAX_COLUMNS / PYML_MAX_DEPTH ("limit" names the setting)
    413 PAYLOAD_TOO_LARGE       a body over PYML_MAX_BODY_BYTES
    413 TOO_MANY_ROWS           more rows than PYML_MAX_ROWS
    415 UNSUPPORTED_MEDIA_TYPE  a content type other than application/json or text/csv
    422 SCHEMA_ERROR            the data does not match the input schema; "problems" names each field
    500 PREDICT_ERROR           the model's own code raised on real rows; the message is generic and
                                "error_id" finds the exception and traceback in the log
    503 PARSER_UNAVAILABLE      the parse process (see parse_process.py) died while reading this request:
                                retry (a new one is started)

Zero rows are answered from the output schema without calling the model. Limits: :mod:`.limits`.

The protocols live along their seams, and this module gathers their public functions:
:mod:`~pyml_jupyter.serving.jsonio` (JSON ``loads``/``dumps``), :mod:`~pyml_jupyter.serving.answers` (the
answer, :class:`ScoringError` and its body, timed phases, the predict call),
:mod:`~pyml_jupyter.serving.invocations` (MLflow's protocol: JSON forms and CSV) and
:mod:`~pyml_jupyter.serving.v2` (the Open Inference Protocol). All are part of the serving runtime: stdlib,
numpy and pandas only.
"""

from __future__ import annotations

from .answers import Answer, ScoringError, error_body, predict
from .invocations import invocations, parse_invocations, predictions_json, read_invocations, write_invocations
from .jsonio import dumps, loads
from .v2 import (
    V2_DATATYPES,
    infer_v2,
    parse_v2,
    read_v2,
    v2_datatype,
    v2_input,
    v2_outputs,
    v2_response,
    write_v2,
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

