"""What every protocol shares: the answer, the request error and its JSON body, the timed phases, the predict call.

Failures become a :class:`ScoringError` with an HTTP status and a JSON body (``{"error_code", "message", ...}``);
the V2 protocol's form adds ``"error"``. This module is part of the serving runtime: stdlib only (besides the
runtime's own modules).
"""

from __future__ import annotations

import logging
import time
import uuid
from typing import Any, Callable, NamedTuple

from .jsonio import JSON_ERRORS, dumps, loads
from .loader import LoadedModel
from .schema import SchemaError

__all__ = ["Answer", "ScoringError", "error_body", "Timer", "predict", "guard", "parse_json"]

logger = logging.getLogger("pyml_jupyter.serving")


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


def predict(model: LoadedModel, data: Any) -> Any:
    """The model's prediction on enforced input; anything the model raises becomes a 500 with an error id."""
    try:
        return model.predict_enforced(data)
    except Exception as exc:  # noqa: BLE001 - user code: any exception is a prediction error
        error_id = str(uuid.uuid4())
        logger.error("predict failed (error_id=%s)", error_id, exc_info=True)
        raise ScoringError(500, "PREDICT_ERROR", f"The model's predict() raised {type(exc).__name__}: {exc}",
                           error_id=error_id) from exc


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
            logger.warning("unreadable request (error_id=%s)", error_id, exc_info=True)
            raise ScoringError.bad_request(f"The request cannot be read: {type(exc).__name__}: {exc}",
                                           error_id=error_id) from exc
        logger.error("cannot serialize the prediction (error_id=%s)", error_id, exc_info=True)
        raise ScoringError(500, "SERIALIZE_ERROR", f"The prediction cannot be written as JSON: "
                                                   f"{type(exc).__name__}: {exc}", error_id=error_id) from exc
