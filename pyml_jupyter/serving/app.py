"""The HTTP face of the serving runtime: a Starlette app that loads one model package and serves it.

Endpoints (all answers are JSON unless said otherwise)::

    POST /invocations                      MLflow scoring protocol (see scoring.py): same requests, same answers
    POST /v2/models/{name}[/versions/{v}]/infer   Open Inference Protocol (KServe V2)
    GET  /v2/models/{name}[/versions/{v}]  V2 model metadata          GET /v2/models/{name}/ready
    GET  /v2   /v2/health/live   /v2/health/ready                      V2 server metadata and health
    GET  /ping   /health                   200 once the model is loaded
    GET  /metadata                         name, version, run id, kind, class, schemas, Python versions
    GET  /openapi.json                     OpenAPI 3 document generated from the model's contract
    GET  /metrics                          Prometheus text format (see metrics.py)

The package is loaded once, in the lifespan, before the first request is accepted. Configuration comes from
:func:`create_app`'s arguments or, through :func:`app_from_env` (the factory uvicorn workers call), from the
environment: ``PYML_PACKAGE``, ``PYML_MODEL_NAME``, ``PYML_MODEL_VERSION``, ``PYML_RUN_ID``, the request limits
``PYML_MAX_BODY_BYTES`` (default 20 MiB), ``PYML_MAX_ROWS``, ``PYML_MAX_COLUMNS`` and ``PYML_MAX_DEPTH`` (see
limits.py), ``PYML_PREDICT_THREAD``, ``PYML_MAX_BATCH_ROWS``, ``PYML_MAX_BATCH_BYTES``, ``PYML_GRPC_PORT``,
``PYML_GRPC_UDS``, ``PYML_PARSE_PROCESS_BYTES`` (see parse_process.py), ``PYML_ALLOWED_HOSTS`` and ``PYML_TOKEN``
(see access.py: requests naming another ``Host`` get 400; with a token, all but the probes need it).

A request is parsed, validated and serialized on the event loop (bodies over 64 KiB are parsed, and their answers
written, on a parse thread; bodies over ``PYML_PARSE_PROCESS_BYTES``, default 256 KiB, are parsed and validated,
and their answers written, in the parse process, a warm child process, since the JSON parser and encoder hold the
GIL for ~0.1 s per MB: see parse_process.py); its validated input then goes through the
:class:`~pyml_jupyter.serving.batching.Batcher`, whose one predict thread runs the model, so ``/ping``,
``/health``, ``/v2/health/*`` and ``/metrics`` answer while a predict runs for seconds. Concurrent requests of a
model whose contract check proved batch invariance are predicted together (see batching.py).
``PYML_PREDICT_THREAD=0`` predicts on the event loop instead (no thread hop, no batching; health waits for
predictions): it is there to measure the hop.

When a gRPC port or Unix socket is configured, the same server answers the Open Inference Protocol over gRPC
(see grpc_server.py), through the same batcher.

A bad request never takes the server down: every failure is answered with a JSON error (400, 404, 405, 413,
415, 422, 500, 503) and counted in ``/metrics``. This module is part of the serving runtime: it imports only the
standard library, numpy, pandas and starlette.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import platform
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from . import scoring
from .access import AccessGuard, AccessPolicy, document_access, policy_from_env
from .batching import ARRIVAL_KEY, DEFAULT_MAX_BATCH_BYTES, DEFAULT_MAX_BATCH_ROWS, Arrival, Batcher
from .limits import DEFAULT_MAX_BODY_BYTES, Limits
from .loader import LoadedModel, load_package
from .metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from .metrics import Metrics
from .openapi import openapi_document
from .parse_process import DEFAULT_PARSE_PROCESS_BYTES, ParseProcess, parse_process_bytes_from_env
from .scoring import Answer, ScoringError, dumps, v2_datatype
from .v2_binary import HEADER as BINARY_HEADER
from .v2_binary import header_length

__all__ = ["create_app", "app_from_env", "ModelServer", "DEFAULT_MAX_BODY_BYTES"]

# Bodies larger than this are parsed and validated on a parse thread, so that they do not hold the event loop.
PARSE_THREAD_BYTES = 64 * 1024
JSON = "application/json"
_JSON_HEADER = (b"content-type", JSON.encode())
logger = logging.getLogger("pyml_jupyter.serving")


def _runtime_version() -> str:
    try:
        from importlib.metadata import version

        return version("pyml_jupyter")
    except Exception:  # noqa: BLE001 - in the image the runtime is copied, not installed
        return "unknown"


class ModelServer:
    """One loaded model and the handlers that serve it; :func:`create_app` routes requests to them."""

    access: AccessPolicy = AccessPolicy()  # who may call (see access.py); create_app sets it

    def __init__(self, package_path: str | os.PathLike, *, model_name: str | None = None,
                 model_version: str | None = None, run_id: str | None = None,
                 max_body_bytes: int = DEFAULT_MAX_BODY_BYTES, predict_thread: bool = True,
                 max_batch_rows: int = DEFAULT_MAX_BATCH_ROWS, max_batch_bytes: int = DEFAULT_MAX_BATCH_BYTES,
                 grpc_port: int | None = None, grpc_uds: str | None = None, limits: Limits | None = None,
                 parse_process_bytes: int = DEFAULT_PARSE_PROCESS_BYTES) -> None:
        self.package_path = Path(package_path)
        self.configured_name = model_name
        self.model_version = None if model_version in (None, "") else str(model_version)
        self.run_id = run_id or None
        self.limits = limits or Limits()
        if max_body_bytes != DEFAULT_MAX_BODY_BYTES:  # given explicitly: it wins over the limits' own
            self.limits = dataclasses.replace(self.limits, max_body_bytes=int(max_body_bytes))
        self.max_body_bytes = self.limits.max_body_bytes
        self.predict_thread = predict_thread
        self.max_batch_rows = int(max_batch_rows)
        self.max_batch_bytes = int(max_batch_bytes)
        self.grpc_port = grpc_port
        self.grpc_uds = grpc_uds
        self.batcher: Batcher | None = None
        self.model: LoadedModel | None = None
        self.model_name = model_name or ""
        self.metrics = Metrics()
        self._executor: ThreadPoolExecutor | None = None
        self._parse_executor: ThreadPoolExecutor | None = None
        self.parse_process_bytes = int(parse_process_bytes)
        self.parse_process: ParseProcess | None = None
        self._grpc: Any = None
        self._openapi: bytes | None = None
        self._static: dict[str, bytes] = {}

    # ------------------------------------------------------------------------------------ lifecycle
    def load(self) -> None:
        """Load the package (import model.py, load artifacts, construct the model) and precompute answers."""
        started = time.perf_counter()
        if self.parse_process_bytes > 0:  # started first: it warms up while the model loads
            self.parse_process = ParseProcess(self.package_path, self.limits, self.parse_process_bytes)
            self.parse_process.start()
        model = load_package(self.package_path)
        info = model.info
        meta = info.metadata or {}
        self.model_name = self.configured_name or meta.get("model_name") or meta.get("name") or info.class_name
        if self.model_version is None and meta.get("model_version") is not None:
            self.model_version = str(meta["model_version"])
        self.run_id = self.run_id or meta.get("run_id")
        self.metrics.info = {"name": self.model_name, "version": self.model_version or "",
                             "run_id": self.run_id or "", "kind": info.kind}
        if self.predict_thread:
            # One thread: predictions run one at a time (user models need not be thread-safe) while the
            # event loop stays free to answer health checks and metrics.
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pyml-predict")
        self._parse_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pyml-parse")
        self.batcher = Batcher(model.predict_enforced, lambda data: scoring.predict(model, data),
                               executor=self._executor, batching=info.batch_invariant,
                               max_rows=self.max_batch_rows, max_bytes=self.max_batch_bytes,
                               observe=self.metrics.observe_batch)
        self._warm_up(model)
        self._wait_parse_process()
        self.model = model
        self._static = {
            "metadata": dumps(self.metadata()),
            "v2_model": dumps(self.v2_model_metadata()),
            "v2_server": dumps({"name": "pyml_jupyter.serving", "version": _runtime_version(),
                                "extensions": ["binary_tensor_data"]}),
        }
        batching = (f"batching up to {self.max_batch_rows} rows" if self.batcher.batching else
                    "no batching" + ("" if info.batch_invariant else " (batch invariance not proven)"))
        logger.info("serving %s version %s (%s model %s) from %s, loaded in %.2f s; %s", self.model_name,
                    self.model_version or "-", info.kind, info.class_name, self.package_path,
                    time.perf_counter() - started, batching)

    def _wait_parse_process(self) -> None:
        """Wait for the parse process to be warm; without one (it could not start), bodies are read here."""
        if self.parse_process is None:
            return
        try:
            self.parse_process.wait_ready()
        except Exception:  # noqa: BLE001 - e.g. no /dev/shm for its queues: serving still starts
            logger.warning("the parse process did not start: large bodies are parsed in the server process, and "
                           "health checks wait for them", exc_info=True)
            self.parse_process.close()
            self.parse_process = None

    @staticmethod
    def _warm_up(model: LoadedModel) -> None:
        """Predict the package's sample once, so the first request does not pay for lazy imports and caches."""
        try:
            model.predict(model.info.read_sample())
        except Exception:  # noqa: BLE001 - the contract check judged the model; serving still starts
            logger.warning("the model failed on its own sample input while warming up", exc_info=True)

    def close(self) -> None:
        for executor in (self._executor, self._parse_executor):
            if executor is not None:
                executor.shutdown(wait=True)
        self._executor = self._parse_executor = None
        if self.parse_process is not None:
            self.parse_process.close()
            self.parse_process = None

    @contextlib.asynccontextmanager
    async def lifespan(self, app: Starlette):
        self.load()
        try:
            if self.grpc_port is not None or self.grpc_uds:
                from .grpc_server import start_grpc_server  # grpcio is needed only when gRPC is asked for

                self._grpc = await start_grpc_server(self, port=self.grpc_port, uds=self.grpc_uds)
            yield
        finally:
            if self._grpc is not None:
                await self._grpc.stop(grace=5)
                self._grpc = None
            self.close()

    # ------------------------------------------------------------------------------- descriptions
    def metadata(self) -> dict:
        info = self.model.info
        return {
            "name": self.model_name,
            "version": self.model_version,
            "run_id": self.run_id,
            "kind": info.kind,
            "class_name": info.class_name,
            "input_schema": info.input_schema.to_dict(),
            "output_schema": info.output_schema.to_dict(),
            "python_version": info.python_version,
            "runtime_python_version": platform.python_version(),
            "metadata": info.metadata,
        }

    def _v2_tensors(self, schema) -> list[dict]:
        if schema.kind == "dataframe":
            return [{"name": c.name, "datatype": v2_datatype(c.dtype), "shape": [-1]} for c in schema.columns]
        return [{"name": t.name, "datatype": v2_datatype(t.dtype), "shape": [-1 if d is None else d for d in t.shape]}
                for t in schema.tensors]

    def v2_model_metadata(self) -> dict:
        info = self.model.info
        return {"name": self.model_name, "versions": [self.model_version] if self.model_version else [],
                "platform": f"pyml_jupyter_{info.kind}",
                "inputs": self._v2_tensors(info.input_schema), "outputs": self._v2_tensors(info.output_schema)}

    def openapi(self) -> bytes:
        if self._openapi is None:
            info = self.model.info
            sample = None
            if _env_bool("PYML_OPENAPI_SAMPLE", False):  # the sample is real data: published only when asked
                try:
                    sample = info.read_sample()
                except Exception:  # noqa: BLE001 - a package without a readable sample still gets its document
                    sample = None
            document = openapi_document(info, model_name=self.model_name, model_version=self.model_version,
                                        sample=sample, limits=self.limits)
            self._openapi = dumps(document_access(document, self.access))
        return self._openapi

    # ------------------------------------------------------------------------------------ plumbing
    def _respond(self, route: str, method: str, status: int, body: bytes, error_code: str | None = None,
                 media_type: str = JSON) -> Response:
        self.metrics.observe_request(route, method, status)
        if error_code is not None:
            self.metrics.observe_error(route, error_code)
        return Response(body, status_code=status, media_type=media_type)

    def _error(self, route: str, method: str, error: ScoringError, *, v2: bool = False) -> Response:
        return self._respond(route, method, error.status, scoring.error_body(error, v2=v2), error.error_code)

    async def _read_body(self, declared: str | None, receive: Callable) -> bytes:
        """The request body, refused with 413 as soon as it is known to exceed the limit (from ``declared``, the
        Content-Length header, or while reading), or with 499 when the client went away before sending it all."""
        limit = self.max_body_bytes
        if declared is not None:
            try:
                size = int(declared)
            except ValueError:
                raise ScoringError.bad_request(f"Invalid Content-Length {declared!r}") from None
            if size > limit:
                raise self.limits.too_large(size)
        chunks: list[bytes] = []
        total = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise ScoringError(499, "CLIENT_DISCONNECTED", "The client closed the connection")
            chunk = message.get("body", b"")
            if chunk:
                total += len(chunk)
                if total > limit:  # a chunked body, or one longer than its Content-Length said
                    raise self.limits.too_large(total, streaming=True)
                chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    async def parse(self, nbytes: int, function: Callable, *args: Any) -> Any:
        """``function(*args)``: on the event loop for a small body, on the parse thread for a large one."""
        if nbytes <= PARSE_THREAD_BYTES or self._parse_executor is None:
            return function(*args)
        return await asyncio.get_running_loop().run_in_executor(self._parse_executor, function, *args)

    async def score_invocations(self, body: bytes, content_type: str | None, timings: dict[str, float],
                                arrival: Arrival | None = None) -> Answer:
        """An ``/invocations`` answer: parsed and validated alone, predicted through the batcher (``arrival``: the
        request's place among those on their way to it). Never raises."""
        try:
            if arrival is not None and len(body) > PARSE_THREAD_BYTES:
                arrival.leave()  # parsed off the event loop: no batch should wait for it meanwhile
            if self.parse_process is not None and self.parse_process.takes(len(body)):
                data = await self.parse_process.read_invocations(body, content_type, timings)
                output = await self.batcher.predict(data, len(body), timings, arrival)
                return Answer(200, await self.parse_process.write_invocations(output, timings))
            data = await self.parse(len(body), scoring.read_invocations, self.model, body, content_type,
                                    timings, self.limits)
            output = await self.batcher.predict(data, len(body), timings, arrival)
            # a large answer is written on the parse thread too, so the event loop stays free meanwhile
            return Answer(200, await self.parse(len(body), scoring.write_invocations, output, timings))
        except ScoringError as exc:
            return Answer(exc.status, scoring.error_body(exc), exc.error_code)

    async def score_v2(self, body: bytes, timings: dict[str, float], json_length: str | None = None,
                       arrival: Arrival | None = None) -> Answer:
        """A V2 ``infer`` answer, like :meth:`score_invocations`; ``json_length`` is the request's
        ``Inference-Header-Content-Length`` (binary inputs follow the JSON). Never raises."""
        try:
            length = header_length(json_length, len(body))
            if arrival is not None and len(body) > PARSE_THREAD_BYTES:
                arrival.leave()  # parsed off the event loop: no batch should wait for it meanwhile
            if self.parse_process is not None and self.parse_process.takes(len(body) if length is None else length):
                data, request = await self.parse_process.read_v2(body, length, timings)
                output = await self.batcher.predict(data, len(body), timings, arrival)
                return await self.parse_process.write_v2(output, request, self.model_name, self.model_version,
                                                         timings)
            data, request = await self.parse(len(body), lambda: scoring.read_v2(self.model, body, timings,
                                                                                json_length=length,
                                                                                limits=self.limits))
            output = await self.batcher.predict(data, len(body), timings, arrival)
            return await self.parse(len(body), lambda: scoring.write_v2(self.model, output, request,
                                                                        model_name=self.model_name,
                                                                        model_version=self.model_version,
                                                                        timings=timings))
        except ScoringError as exc:
            return Answer(exc.status, scoring.error_body(exc, v2=True), exc.error_code)

    def _model_matches(self, request: Request) -> ScoringError | None:
        params = request.path_params
        name, version = params.get("name"), params.get("version")
        if name != self.model_name:
            return ScoringError(404, "NOT_FOUND", f"No model named {name!r}; this server serves "
                                                  f"{self.model_name!r}")
        if version is not None and version != self.model_version:
            return ScoringError(404, "NOT_FOUND", f"Model {name!r} has no version {version!r}; it serves "
                                                  f"version {self.model_version!r}")
        return None

    # ------------------------------------------------------------------------------------ handlers
    async def invocations(self, scope: dict, receive: Callable, send: Callable) -> None:
        """``POST /invocations``, as a plain ASGI app: the hot path goes without Starlette's Request and
        Response objects, which cost as much as validating a 1-row request. Same answers, same metrics."""
        route = "/invocations"
        content_type = content_length = None
        for key, value in scope["headers"]:  # names are lower-case in ASGI; the first of a repeated one counts
            if key == b"content-type":
                content_type = value.decode("latin-1") if content_type is None else content_type
            elif key == b"content-length":
                content_length = value.decode("latin-1") if content_length is None else content_length
        timings: dict[str, float] = {}
        try:
            body = await self._read_body(content_length, receive)
        except ScoringError as exc:
            answer = Answer(exc.status, scoring.error_body(exc), exc.error_code)
        else:
            answer = await self.score_invocations(body, content_type, timings, scope.get(ARRIVAL_KEY))
            self.metrics.observe_phases(route, timings)
        self.metrics.observe_request(route, "POST", answer.status)
        if answer.error_code is not None:
            self.metrics.observe_error(route, answer.error_code)
        headers = [(b"content-length", str(len(answer.body)).encode()), _JSON_HEADER]
        if timings:  # this request's own phases, in milliseconds (the W3C Server-Timing header)
            headers.append((b"server-timing", ", ".join(f"{k};dur={v * 1e3:.3f}" for k, v in timings.items()).encode()))
        await send({"type": "http.response.start", "status": answer.status, "headers": headers})
        await send({"type": "http.response.body", "body": answer.body})

    async def v2_infer(self, request: Request) -> Response:
        route = request.scope["route_template"]
        missing = self._model_matches(request)
        if missing is not None:
            return self._error(route, "POST", missing, v2=True)
        try:
            body = await self._read_body(request.headers.get("content-length"), request.receive)
        except ScoringError as exc:
            return self._error(route, "POST", exc, v2=True)
        content_type = request.headers.get("content-type")
        json_length = request.headers.get(BINARY_HEADER)
        accepted = (JSON, "application/octet-stream") if json_length is not None else (JSON,)
        if content_type and content_type.partition(";")[0].strip().lower() not in accepted:
            return self._error(route, "POST", ScoringError(415, "UNSUPPORTED_MEDIA_TYPE",
                                                           f"Content type {content_type!r} is not supported; "
                                                           f"send {' or '.join(accepted)}"), v2=True)
        timings: dict[str, float] = {}
        answer = await self.score_v2(body, timings, json_length, request.scope.get(ARRIVAL_KEY))
        self.metrics.observe_phases(route, timings)
        if answer.json_length is None:
            return self._respond(route, "POST", answer.status, answer.body, answer.error_code)
        self.metrics.observe_request(route, "POST", answer.status)
        return Response(answer.body, status_code=answer.status, media_type="application/octet-stream",
                        headers={BINARY_HEADER: str(answer.json_length)})

    async def v2_model(self, request: Request) -> Response:
        route = request.scope["route_template"]
        missing = self._model_matches(request)
        if missing is not None:
            return self._error(route, "GET", missing, v2=True)
        return self._respond(route, "GET", 200, self._static["v2_model"])

    async def v2_model_ready(self, request: Request) -> Response:
        route = request.scope["route_template"]
        missing = self._model_matches(request)
        if missing is not None:
            return self._error(route, "GET", missing, v2=True)
        return self._respond(route, "GET", 200, dumps({"name": self.model_name, "ready": self.model is not None}))

    async def v2_server(self, request: Request) -> Response:
        return self._respond("/v2", "GET", 200, self._static["v2_server"])

    async def live(self, request: Request) -> Response:
        return self._respond("/v2/health/live", "GET", 200, b'{"live":true}')

    async def ready(self, request: Request) -> Response:
        route = request.url.path if request.url.path in ("/ping", "/health") else "/v2/health/ready"
        if self.model is None:
            return self._respond(route, "GET", 503, b'{"ready":false}', "NOT_READY")
        if route == "/v2/health/ready":
            return self._respond(route, "GET", 200, b'{"ready":true}')
        return self._respond(route, "GET", 200, dumps({"status": "ok", "model": self.model_name,
                                                       "version": self.model_version}))

    async def metadata_endpoint(self, request: Request) -> Response:
        return self._respond("/metadata", "GET", 200, self._static["metadata"])

    async def openapi_endpoint(self, request: Request) -> Response:
        return self._respond("/openapi.json", "GET", 200, self.openapi())

    async def metrics_endpoint(self, request: Request) -> Response:
        self.metrics.observe_request("/metrics", "GET", 200)  # counted before rendering, so it counts itself
        return Response(self.metrics.render(), media_type=METRICS_CONTENT_TYPE)

    def observe_refused(self, path: str, method: str, status: int, error_code: str) -> None:
        """Count a request the access policy refused (by a fixed route label: paths are the client's)."""
        self.metrics.observe_request("<refused>", method, status)
        self.metrics.observe_error("<refused>", error_code)

    async def http_error(self, request: Request, exc: Exception) -> Response:
        """Starlette's own 404 (no such path) and 405 (wrong method), as JSON and counted."""
        assert isinstance(exc, HTTPException)
        code = {404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED"}.get(exc.status_code, "HTTP_ERROR")
        route = request.scope.get("route_template", "<unmatched>")
        self.metrics.observe_request(route, request.method, exc.status_code)
        self.metrics.observe_error(route, code)
        message = (f"No route {request.method} {request.url.path}; see /openapi.json"
                   if exc.status_code == 404 else f"{request.method} is not allowed on {request.url.path}")
        return Response(dumps({"error_code": code, "message": message}), status_code=exc.status_code,
                        media_type=JSON, headers=exc.headers)


class _AsgiEndpoint:
    """Wraps a ``handler(scope, receive, send)`` method so that Starlette's Route calls it as an ASGI app
    (a plain function or method would be called with a Request and expected to return a Response)."""

    __slots__ = ("handler",)

    def __init__(self, handler: Callable) -> None:
        self.handler = handler

    def __call__(self, scope: dict, receive: Callable, send: Callable) -> Any:
        return self.handler(scope, receive, send)


class _TemplateRoute(Route):
    """A Route that records its path template in the scope, to label metrics without per-request work."""

    def matches(self, scope):  # type: ignore[override]
        match, child_scope = super().matches(scope)
        if child_scope:
            child_scope["route_template"] = self.path
        return match, child_scope


def create_app(package_path: str | os.PathLike, *, model_name: str | None = None,
               model_version: str | None = None, run_id: str | None = None,
               max_body_bytes: int = DEFAULT_MAX_BODY_BYTES, predict_thread: bool = True,
               max_batch_rows: int = DEFAULT_MAX_BATCH_ROWS, max_batch_bytes: int = DEFAULT_MAX_BATCH_BYTES,
               grpc_port: int | None = None, grpc_uds: str | None = None,
               access: AccessPolicy | None = None, limits: Limits | None = None,
               parse_process_bytes: int = DEFAULT_PARSE_PROCESS_BYTES) -> Starlette:
    """The Starlette app serving the package at ``package_path``; the package loads when the app starts.

    ``model_name`` defaults to the package's metadata ``model_name`` or its class name; it is the ``{name}``
    of the V2 routes. ``max_body_bytes`` bounds request bodies (413 beyond). ``predict_thread=False`` predicts
    on the event loop (no batching). ``max_batch_rows`` / ``max_batch_bytes`` bound a batch (0 rows: no
    batching). ``grpc_port`` / ``grpc_uds`` also serve gRPC while the app runs. ``access`` says which hosts
    and token are accepted (default: from ``PYML_ALLOWED_HOSTS`` and ``PYML_TOKEN``, see access.py).
    ``limits`` bounds rows, columns and nesting (default: :class:`~pyml_jupyter.serving.limits.Limits`'
    defaults). Bodies of more than ``parse_process_bytes`` are read in the parse process (0: never; see
    parse_process.py). ``app.state.server`` is the :class:`ModelServer`.
    """
    server = ModelServer(package_path, model_name=model_name, model_version=model_version, run_id=run_id,
                         max_body_bytes=max_body_bytes, predict_thread=predict_thread,
                         max_batch_rows=max_batch_rows, max_batch_bytes=max_batch_bytes,
                         grpc_port=grpc_port, grpc_uds=grpc_uds, limits=limits,
                         parse_process_bytes=parse_process_bytes)
    server.access = access or policy_from_env()
    routes = [
        _TemplateRoute("/invocations", _AsgiEndpoint(server.invocations), methods=["POST"]),
        _TemplateRoute("/ping", server.ready, methods=["GET"]),
        _TemplateRoute("/health", server.ready, methods=["GET"]),
        _TemplateRoute("/metadata", server.metadata_endpoint, methods=["GET"]),
        _TemplateRoute("/openapi.json", server.openapi_endpoint, methods=["GET"]),
        _TemplateRoute("/metrics", server.metrics_endpoint, methods=["GET"]),
        _TemplateRoute("/v2", server.v2_server, methods=["GET"]),
        _TemplateRoute("/v2/health/live", server.live, methods=["GET"]),
        _TemplateRoute("/v2/health/ready", server.ready, methods=["GET"]),
        _TemplateRoute("/v2/models/{name}", server.v2_model, methods=["GET"]),
        _TemplateRoute("/v2/models/{name}/versions/{version}", server.v2_model, methods=["GET"]),
        _TemplateRoute("/v2/models/{name}/ready", server.v2_model_ready, methods=["GET"]),
        _TemplateRoute("/v2/models/{name}/versions/{version}/ready", server.v2_model_ready, methods=["GET"]),
        _TemplateRoute("/v2/models/{name}/infer", server.v2_infer, methods=["POST"]),
        _TemplateRoute("/v2/models/{name}/versions/{version}/infer", server.v2_infer, methods=["POST"]),
    ]
    guard = Middleware(AccessGuard, policy=server.access, refused=server.observe_refused)
    app = Starlette(routes=routes, lifespan=server.lifespan, exception_handlers={HTTPException: server.http_error},
                    middleware=[guard])
    app.state.server = server
    return app


def _env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    return value.strip().lower() not in ("0", "false", "no", "off")


def _env_int(name: str, default: int | None) -> int | None:
    value = os.environ.get(name)
    return default if value is None or value.strip() == "" else int(value)


def app_from_env() -> Starlette:
    """The app configured from ``PYML_*`` environment variables (uvicorn's factory in every worker)."""
    package = os.environ.get("PYML_PACKAGE")
    if not package:
        raise RuntimeError("PYML_PACKAGE is not set: point it at the model package folder to serve")
    return create_app(
        package,
        model_name=os.environ.get("PYML_MODEL_NAME") or None,
        model_version=os.environ.get("PYML_MODEL_VERSION") or None,
        run_id=os.environ.get("PYML_RUN_ID") or None,
        limits=Limits.from_env(),
        predict_thread=_env_bool("PYML_PREDICT_THREAD", True),
        max_batch_rows=_env_int("PYML_MAX_BATCH_ROWS", DEFAULT_MAX_BATCH_ROWS),
        max_batch_bytes=_env_int("PYML_MAX_BATCH_BYTES", DEFAULT_MAX_BATCH_BYTES),
        grpc_port=_env_int("PYML_GRPC_PORT", None),
        grpc_uds=os.environ.get("PYML_GRPC_UDS") or None,
        parse_process_bytes=parse_process_bytes_from_env(),
    )

