"""Run the serving app under uvicorn, tuned for small, latency-bound requests.

* ``httptools`` and ``uvloop`` when installed (``h11`` and ``asyncio`` otherwise), no access log.
* Every accepted TCP connection gets ``TCP_NODELAY``. asyncio sets it only on sockets whose ``proto`` is
  ``IPPROTO_TCP``; with ``--workers N`` uvicorn binds the listening socket itself with ``proto=0``, so accepted
  connections keep Nagle's algorithm on, and as uvicorn writes a response's head and body separately, each
  keep-alive response waits for the client's delayed ACK (~40 ms per request on Linux; uvloop sets the option
  itself, plain asyncio does not). The protocol classes below set it on every connection, whatever the loop.
* The app is built by the factory :func:`pyml_jupyter.serving.app.app_from_env` in each worker process, from
  the ``PYML_*`` environment variables :func:`run` sets, so one and many workers take the same path.
"""

from __future__ import annotations

import copy
import importlib.util
import os
import socket

import uvicorn
from uvicorn.config import LOGGING_CONFIG
from uvicorn.protocols.http.h11_impl import H11Protocol

__all__ = ["run", "H11NoDelayProtocol", "http_protocol", "event_loop"]

_HAS_HTTPTOOLS = importlib.util.find_spec("httptools") is not None
_HAS_UVLOOP = importlib.util.find_spec("uvloop") is not None


def set_nodelay(transport) -> None:
    """Turn Nagle's algorithm off on a transport's TCP socket (no-op for Unix sockets)."""
    sock = transport.get_extra_info("socket")
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:  # pragma: no cover - the peer may already be gone
            pass


class H11NoDelayProtocol(H11Protocol):
    def connection_made(self, transport) -> None:  # type: ignore[override]
        set_nodelay(transport)
        super().connection_made(transport)


if _HAS_HTTPTOOLS:  # pragma: no branch - depends on the environment
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    class HttpToolsNoDelayProtocol(HttpToolsProtocol):
        def connection_made(self, transport) -> None:  # type: ignore[override]
            set_nodelay(transport)
            super().connection_made(transport)

    __all__.append("HttpToolsNoDelayProtocol")


def http_protocol(name: str = "auto") -> str:
    """The import string of the HTTP protocol class: httptools if available (or asked for), else h11."""
    if name == "httptools" or (name == "auto" and _HAS_HTTPTOOLS):
        if not _HAS_HTTPTOOLS:
            raise RuntimeError("http='httptools' asked for, but httptools is not installed")
        return f"{__name__}:HttpToolsNoDelayProtocol"
    return f"{__name__}:H11NoDelayProtocol"


def event_loop(name: str = "auto") -> str:
    return ("uvloop" if _HAS_UVLOOP else "asyncio") if name == "auto" else name


def _log_config(level: str) -> dict:
    # uvicorn's own config, plus the runtime's logger (prediction errors with their error_id and traceback).
    config = copy.deepcopy(LOGGING_CONFIG)
    config["loggers"]["pyml_jupyter.serving"] = {"handlers": ["default"], "level": level.upper(), "propagate": False}
    return config


def run(
    package: str | os.PathLike,
    *,
    host: str = "127.0.0.1",
    port: int = 8080,
    workers: int = 1,
    model_name: str | None = None,
    model_version: str | None = None,
    run_id: str | None = None,
    max_body_bytes: int | None = None,
    http: str = "auto",
    loop: str = "auto",
    log_level: str = "info",
) -> None:
    """Serve a model package until interrupted; ``workers`` processes share the listening socket."""
    # The factory reads these in every worker process (spawned workers inherit the environment).
    settings = {"PYML_PACKAGE": os.fspath(os.path.abspath(package)), "PYML_MODEL_NAME": model_name,
                "PYML_MODEL_VERSION": model_version, "PYML_RUN_ID": run_id,
                "PYML_MAX_BODY_BYTES": None if max_body_bytes is None else str(max_body_bytes)}
    for key, value in settings.items():
        if value is not None:
            os.environ[key] = value
    uvicorn.run(
        "pyml_jupyter.serving.app:app_from_env",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        http=http_protocol(http),
        loop=event_loop(loop),
        lifespan="on",
        access_log=False,
        log_level=log_level,
        log_config=_log_config(log_level),
        server_header=False,
        date_header=False,
    )
