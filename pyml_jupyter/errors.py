"""One base exception for everything a user can get wrong, with an HTTP status and a JSON form.

Faces map it once: magics turn it into IPython's ``UsageError`` (a clear paragraph, no traceback), the
jupyter_server handlers into a JSON error with its status, the CLI into a message and exit code 2.

Messages say what is wrong in words every face can show. What to do next is often face-specific (a magic in a
notebook, a command in a shell, a button in the panel): an error names it by a ``hint`` key, and each face
looks the key up in its own ``HINTS`` table (:func:`with_hint`).
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping

from .uris import redact

__all__ = [
    "PymlError",
    "CaptureError",
    "CheckFailed",
    "NotFound",
    "InvalidName",
    "InvalidInput",
    "BuildError",
    "DeployError",
    "BatchError",
    "ModelFailed",
    "TrackingError",
    "HINT_REGISTER",
    "HINT_BUILD",
    "HINT_DEPLOYMENTS",
    "HINT_PUSH",
    "with_hint",
]

# What a face may suggest next, by key (each face words them in its HINTS table).
HINT_REGISTER = "register"  # the model is not registered: register it
HINT_BUILD = "build"  # the image is missing: build it
HINT_DEPLOYMENTS = "deployments"  # about a deployment: list the running ones
HINT_PUSH = "push"  # the image is not in a registry: push it


class PymlError(Exception):
    """Base error: ``message`` says what is wrong and how to fix it (any credentials of a URI in it masked)."""

    status: int = 400
    code: str = "pyml_error"

    def __init__(self, message: str, *, details: Any = None, hint: str | None = None) -> None:
        message = redact(message)
        super().__init__(message)
        self.message = message
        self.details = details
        self.hint = hint  # a HINT_* key: what to do next, worded by each face

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"error": self.code, "message": self.message}
        if self.details is not None:
            out["details"] = self.details
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any], status: int | None = None) -> "PymlError":
        """The error a :meth:`to_dict` form describes (from a child process), of the class its code names."""
        code = d.get("error")
        found = next((c for c in _subclasses(PymlError) if c.code == code), PymlError)
        error = PymlError.__new__(found)
        PymlError.__init__(error, str(d.get("message") or code or "error"), details=d.get("details"))
        if found is PymlError:
            error.code = str(code or PymlError.code)
        if status is not None:
            error.status = status
        return error


def _subclasses(cls: type) -> list[type]:
    out = []
    for sub in cls.__subclasses__():
        out += [sub, *_subclasses(sub)]
    return out


class CaptureError(PymlError):
    """The model class cannot be captured into a self-contained package."""

    code = "capture_error"


class CheckFailed(PymlError):
    """The contract check failed; ``report`` holds the full :class:`ContractReport`."""

    status = 422
    code = "check_failed"

    def __init__(self, message: str, report: Any) -> None:
        super().__init__(message)  # redacted there
        self.report = report


class NotFound(PymlError):
    status = 404
    code = "not_found"


class InvalidName(PymlError):
    """A user-supplied name that would be unsafe in a Docker tag, a path or SQL."""

    code = "invalid_name"


class InvalidInput(PymlError):
    """Data that does not match the model's input schema (or that the runtime cannot score): ``problems``
    lists each ``{"field", "error"}``, as the serving runtime reports them."""

    status = 422
    code = "invalid_input"

    def __init__(self, message: str, problems: Iterable[Mapping[str, Any]] = ()) -> None:
        self.problems = [dict(p) for p in problems]
        super().__init__(message, details={"problems": self.problems})


class BuildError(PymlError):
    status = 500
    code = "build_error"


class DeployError(PymlError):
    status = 500
    code = "deploy_error"


class BatchError(PymlError):
    code = "batch_error"


class ModelFailed(PymlError):
    """The model's own code raised (or returned nothing usable) on the given input."""

    status = 422
    code = "model_failed"


class TrackingError(PymlError):
    """MLflow (the tracking store or registry) failed: unreachable, refused, or an error of its own."""

    status = 502
    code = "tracking_error"


def with_hint(error: PymlError, hints: Mapping[str, str]) -> str:
    """The error's message, followed by this face's hint for it (when the face has one)."""
    hint = hints.get(error.hint or "")
    return f"{error.message} {hint}" if hint else error.message
