"""What every protocol shares: the answer, the request error and its JSON body, the timed phases, the predict call.

Failures become a :class:`ScoringError` with an HTTP status and a JSON body (``{"error_code", "message", ...}``);
the V2 protocol's form adds ``"error"``. This module is part of the serving runtime: stdlib only (besides the
runtime's own modules), numpy and pandas.
"""

from __future__ import annotations

import logging
import time
import traceback
import uuid
from typing import Any, Callable, NamedTuple

import numpy as np
import pandas as pd

from .batching import row_count
from .jsonio import JSON_ERRORS, dumps, loads
from .loader import LoadedModel
from .schema import DataFrameSchema, FrameColumns, SchemaError

__all__ = ["Answer", "ScoringError", "error_body", "Timer", "predict", "empty_output", "log_error", "guard",
           "parse_json"]

logger = logging.getLogger("pyml_jupyter.serving")


class Answer(NamedTuple):
    """A response: HTTP status, JSON body, and the error code when it is an error (for metrics); a V2 answer
    with binary outputs has the length of its JSON part in ``json_length`` (see v2_binary.py)."""

    status: int
    body: bytes
    error_code: str | None = None
    json_length: int | None = None


class ScoringError(Exception):
    """A request that cannot be answered with predictions: ``status``, ``error_code`` and a JSON form."""

    def __init__(self, status: int, error_code: str, message: str, *, rule: str | None = None, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.error_code = error_code
        self.message = message
        self.extra = extra
        self.rule = rule  # the rule spanning fields (rules.py) the request breaks, named where it is found

    def __reduce__(self) -> tuple:
        """Pickled whole (a parse process sends its errors back): status, code, message, rule and extra fields."""
        return _scoring_error, (self.status, self.error_code, self.message, self.rule, self.extra)

    def to_dict(self) -> dict:
        """The JSON body; an error that breaks a rule spanning fields (see rules.py) names it in ``rule`` (a 422
        names it on each of its ``problems``)."""
        body = {"error_code": self.error_code, "message": self.message, **self.extra}
        if self.rule is not None:
            body["rule"] = self.rule
        return body

    @classmethod
    def bad_request(cls, message: str, *, rule: str | None = None, **extra: Any) -> "ScoringError":
        return cls(400, "BAD_REQUEST", message, rule=rule, **extra)

    @classmethod
    def from_schema_error(cls, error: SchemaError, rule: str | None = None) -> "ScoringError":
        """A 422 listing the problems, each naming the rule it breaks; ``rule``, given by the caller that knows
        the request's form, is the rule of the problems that name none (a CSV body's values, a
        ``dataframe_split`` row's values: typed by position, which the document cannot say)."""
        problems = [p if rule is None or "rule" in p else {**p, "rule": rule} for p in error.problems]
        return cls(422, "SCHEMA_ERROR", str(error), problems=problems)


def _scoring_error(status: int, error_code: str, message: str, rule: str | None, extra: dict) -> ScoringError:
    return ScoringError(status, error_code, message, rule=rule, **extra)


def error_body(error: ScoringError, *, v2: bool = False) -> bytes:
    """The JSON body of an error. The V2 protocol's error object is ``{"error": message}``; ours adds fields."""
    body = error.to_dict()
    if v2:
        body = {"error": error.message, **body}
    return dumps(body)


# ------------------------------------------------------------------------------------------ phases


class Timer:
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


def empty_output(model: LoadedModel) -> Any:
    """The model's answer to zero rows, from its output schema alone: a DataFrame with the declared columns
    and dtypes, or arrays of shape ``(0, ...)`` (variable dimensions 0). Many libraries refuse empty input
    (scikit-learn raises), so a valid empty request never reaches the model."""
    schema = model.info.output_schema
    if isinstance(schema, DataFrameSchema):
        empty = pd.DataFrame({c.name: pd.Series([], dtype=object) for c in schema.columns}, index=pd.RangeIndex(0))
        return schema.enforce(empty).data
    return {t.name: np.zeros(tuple(0 if d is None else d for d in (None, *t.shape[1:])),
                             dtype=object if t.dtype == "string" else t.dtype) for t in schema.tensors}


def log_error(error_id: str, message: str, exc: BaseException, *, level: int = logging.ERROR) -> None:
    """Log ``message``, the exception and its traceback, every line tagged ``[error_id=...]``, so that
    ``grep error_id`` (or :meth:`Deployment.error_log <pyml_jupyter.deployments.Deployment.error_log>`)
    finds all of it and only it."""
    lines = [message, *"".join(traceback.format_exception(type(exc), exc, exc.__traceback__)).splitlines()]
    logger.log(level, "\n".join(f"[error_id={error_id}] {line}" for line in lines))


def predict(model: LoadedModel, data: Any) -> Any:
    """The model's prediction on enforced input (zero rows: :func:`empty_output`, the model is not called);
    :class:`~.schema.FrameColumns` become their DataFrame first.

    Anything the model raises becomes a 500 whose message is generic and whose ``error_id`` finds the
    exception and its traceback in the server log (the answer never echoes the model's own text)."""
    if row_count(data) == 0:
        return empty_output(model)
    if isinstance(data, FrameColumns):  # a request's validated columns: its DataFrame is built here, once
        data = data.frame()
    try:
        return model.predict_enforced(data)
    except Exception as exc:  # noqa: BLE001 - user code: any exception is a prediction error
        error_id = str(uuid.uuid4())
        log_error(error_id, "predict failed", exc)
        raise ScoringError(500, "PREDICT_ERROR", f"The model's predict() raised an exception; the server log "
                                                 f"has it under error_id {error_id}", error_id=error_id) from exc


def parse_json(body: bytes) -> Any:
    """The parsed JSON body; invalid JSON (or UTF-8) is a 400."""
    try:
        return loads(body)
    except JSON_ERRORS as exc:
        raise ScoringError.bad_request(f"The body is not valid JSON: {exc}") from None


def guard(function: Callable, phase: str, *args: Any) -> Any:
    """Run a parse or serialize step; an unexpected exception becomes a ScoringError, never a crash."""
    try:
        return function(*args)
    except ScoringError:
        raise
    except Exception as exc:  # noqa: BLE001
        error_id = str(uuid.uuid4())
        if phase == "parse":  # the input made the parser fail in a way it does not check for: the client's
            log_error(error_id, "unreadable request", exc, level=logging.WARNING)
            raise ScoringError.bad_request(f"The request cannot be read ({type(exc).__name__}); the server log "
                                           f"has the details under error_id {error_id}", error_id=error_id) from exc
        log_error(error_id, "cannot serialize the prediction", exc)
        raise ScoringError(500, "SERIALIZE_ERROR", f"The prediction cannot be written as JSON; the server log "
                                                   f"has the details under error_id {error_id}",
                           error_id=error_id) from exc
