"""Run the serving app under uvicorn, tuned for small, latency-bound requests.

* ``httptools`` and ``uvloop`` when installed (``h11`` and ``asyncio`` otherwise), no access log.
* Every accepted TCP connection gets ``TCP_NODELAY``. asyncio sets it only on sockets whose ``proto`` is
  ``IPPROTO_TCP``; with ``--workers N`` uvicorn binds the listening socket itself with ``proto=0``, so accepted
  connections keep Nagle's algorithm on, and as uvicorn writes a response's head and body separately, each
  keep-alive response waits for the client's delayed ACK (~40 ms per request on Linux; uvloop sets the option
  itself, plain asyncio does not). The protocol classes below set it on every connection, whatever the loop.
* The httptools protocol counts the POST requests it hands to the app (see batching.py's :class:`Arrivals`):
  a free model's batcher starts a batch as soon as no other counted request is on its way to the queue.
* ``workers="auto"`` starts one worker per CPU this process may use: the CPUs it may run on, capped by its
  cgroup's CPU quota (``docker run --cpus``), see :func:`available_cpus`. Each worker has its own model and
  batcher.
* With ``grpc_port`` and/or ``grpc_uds`` every worker also serves the Open Inference Protocol over gRPC
  (see grpc_server.py) on the same event loop.
* The app is built by the factory :func:`pyml_jupyter.serving.app.app_from_env` in each worker process, from
  the ``PYML_*`` environment variables :func:`run` sets, so one and many workers take the same path.
"""

from __future__ import annotations

import copy
import importlib.util
import math
import os
import socket
from pathlib import Path

import uvicorn
from uvicorn.config import LOGGING_CONFIG
from uvicorn.protocols.http.h11_impl import H11Protocol

from .batching import ARRIVAL_KEY, ARRIVALS

__all__ = ["run", "H11NoDelayProtocol", "http_protocol", "event_loop", "available_cpus", "worker_count"]

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


def _counted(app, scope: dict):
    """``app`` for one request counted in :data:`ARRIVALS` until the batcher queues it or it is answered."""
    arrival = scope[ARRIVAL_KEY] = ARRIVALS.expect()

    async def counted_app(scope, receive, send) -> None:
        try:
            await app(scope, receive, send)
        finally:
            arrival.leave()
    return counted_app


if _HAS_HTTPTOOLS:  # pragma: no branch - depends on the environment
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    class HttpToolsNoDelayProtocol(HttpToolsProtocol):
        def connection_made(self, transport) -> None:  # type: ignore[override]
            set_nodelay(transport)
            super().connection_made(transport)

        def _start_asgi_task(self, cycle, app) -> None:  # type: ignore[override]
            # Called as the request's head is parsed, before its task runs: the requests read in one go are
            # all counted before the first of them reaches the batcher.
            if cycle.scope["method"] == "POST":
                app = _counted(app, cycle.scope)
            super()._start_asgi_task(cycle, app)

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


def _cgroup_cpu_quota(root: Path = Path("/sys/fs/cgroup")) -> float | None:
    """The CPUs the cgroup's quota allows (``quota / period``), or None when there is no quota."""
    try:  # cgroup v2: "max 100000" or "150000 100000"
        quota, period = (root / "cpu.max").read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:  # cgroup v1
        quota = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
        period = int((root / "cpu" / "cpu.cfs_period_us").read_text())
        return quota / period if quota > 0 and period > 0 else None
    except (OSError, ValueError):
        return None


def available_cpus() -> int:
    """The CPUs this process may use: those it may run on (affinity, ``--cpuset-cpus``), capped by the
    cgroup's CPU quota (``--cpus``), rounded up; at least 1."""
    count = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    quota = _cgroup_cpu_quota()
    if quota is not None:
        count = min(count, math.ceil(quota))
    return max(1, count)


def worker_count(value: int | str) -> int:
    """``"auto"`` (or 0) -> :func:`available_cpus`; otherwise the number given."""
    if value in ("auto", "", 0, "0"):
        return available_cpus()
    return int(value)


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
    workers: int | str = 1,
    model_name: str | None = None,
    model_version: str | None = None,
    run_id: str | None = None,
    max_body_bytes: int | None = None,
    http: str = "auto",
    loop: str = "auto",
    log_level: str = "info",
    grpc_port: int | None = None,
    grpc_uds: str | None = None,
    max_batch_rows: int | None = None,
) -> None:
    """Serve a model package until interrupted; ``workers`` processes (``"auto"``: one per available CPU)
    share the listening socket(s)."""
    # The factory reads these in every worker process (spawned workers inherit the environment).
    settings = {"PYML_PACKAGE": os.fspath(os.path.abspath(package)), "PYML_MODEL_NAME": model_name,
                "PYML_MODEL_VERSION": model_version, "PYML_RUN_ID": run_id,
                "PYML_MAX_BODY_BYTES": None if max_body_bytes is None else str(max_body_bytes),
                "PYML_GRPC_PORT": None if grpc_port is None else str(grpc_port), "PYML_GRPC_HOST": host,
                "PYML_GRPC_UDS": grpc_uds or None,
                "PYML_MAX_BATCH_ROWS": None if max_batch_rows is None else str(max_batch_rows)}
    for key, value in settings.items():
        if value is not None:
            os.environ[key] = value
    uvicorn.run(
        "pyml_jupyter.serving.app:app_from_env",
        factory=True,
        host=host,
        port=port,
        workers=worker_count(workers),
        http=http_protocol(http),
        loop=event_loop(loop),
        lifespan="on",
        access_log=False,
        log_level=log_level,
        log_config=_log_config(log_level),
        server_header=False,
        date_header=False,
    )
