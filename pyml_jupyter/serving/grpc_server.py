"""The gRPC face of the serving runtime: the Open Inference Protocol's ``inference.GRPCInferenceService``.

ServerLive, ServerReady, ModelReady, ServerMetadata, ModelMetadata and ModelInfer, as KServe and Triton serve
them (``tritonclient[grpc]`` works unchanged). ModelInfer takes its tensors as typed contents
(``InferTensorContents``) or as ``raw_input_contents`` (little-endian bytes; BYTES elements each prefixed by
a 4-byte length) and answers with ``raw_output_contents``, as Triton does. A DataFrame model takes one input
per column, of shape ``[n]`` or ``[n, 1]``, and returns one output per column, as over HTTP.

It runs in the same process and on the same event loop as the HTTP app (``grpc.aio``), and predicts through
the same :class:`~pyml_jupyter.serving.batching.Batcher`, so gRPC and HTTP requests batch together; inputs
are validated by the same code as the V2 HTTP route (:func:`~pyml_jupyter.serving.scoring.v2_input`). It
listens on a TCP port (``--grpc-port``; with several workers each binds it with ``SO_REUSEPORT``, grpcio's
default on Linux, and the kernel spreads connections) and/or a Unix domain socket (``--grpc-uds PATH``,
served by one worker: the first to lock ``PATH.lock``).

The protocol's modules are generated from ``proto/grpc_predict_v2.proto`` (see
``scripts/generate_grpc_stubs.py``). This module is part of the serving runtime: stdlib, numpy, grpcio and
protobuf only (besides the runtime's own modules).
"""

from __future__ import annotations

import fcntl
import logging
import math
import os
import time
from typing import Any

import grpc
import numpy as np
from grpc import aio

from . import scoring
from .access import grpc_interceptor
from .app import PARSE_THREAD_BYTES
from .batching import Arrival, Arrivals
from .proto import grpc_predict_v2_pb2 as pb
from .proto import grpc_predict_v2_pb2_grpc as pb_grpc
from .raw_tensors import RAW_DTYPES, decode_raw, encode_tensor, utf8_texts
from .rules import V2_DATA_COUNT, V2_ONCE
from .scoring import ScoringError
from .v2 import numeric_outputs, requested_outputs

__all__ = ["InferenceServicer", "start_grpc_server", "decode_tensor", "encode_tensor", "SERVICE"]

SERVICE = "inference.GRPCInferenceService"
_INFER_METHOD = f"/{SERVICE}/ModelInfer"
logger = logging.getLogger("pyml_jupyter.serving")

_TYPED = {"BOOL": "bool_contents", "UINT8": "uint_contents", "UINT16": "uint_contents", "UINT32": "uint_contents",
          "UINT64": "uint64_contents", "INT8": "int_contents", "INT16": "int_contents", "INT32": "int_contents",
          "INT64": "int64_contents", "FP32": "fp32_contents", "FP64": "fp64_contents", "BYTES": "bytes_contents"}
_STATUS = {400: grpc.StatusCode.INVALID_ARGUMENT, 404: grpc.StatusCode.NOT_FOUND,
           413: grpc.StatusCode.RESOURCE_EXHAUSTED, 415: grpc.StatusCode.INVALID_ARGUMENT,
           422: grpc.StatusCode.INVALID_ARGUMENT, 499: grpc.StatusCode.CANCELLED,
           503: grpc.StatusCode.UNAVAILABLE}


# ------------------------------------------------------------------------------------------- tensors


def decode_tensor(tensor: Any, raw: bytes | None) -> dict:
    """A V2 input tensor ``{"name", "shape", "datatype", "_flat"}`` from a gRPC input (and its raw contents):
    numbers as a numpy array, BYTES as an object array of ``str`` (UTF-8). Raises a 400 naming the input."""
    name, datatype, shape = tensor.name, tensor.datatype, list(tensor.shape)
    if any(d < 0 for d in shape):
        raise ScoringError.bad_request(f"input '{name}' has a negative dimension in its shape {shape}", field=name)
    if raw is not None:
        return {"name": name, "shape": shape, "datatype": datatype, "_flat": decode_raw(raw, datatype, shape, name)}
    count = math.prod(shape)
    if datatype not in _TYPED:
        if datatype in RAW_DTYPES:
            raise ScoringError.bad_request(f"input '{name}' is {datatype}: send it in raw_input_contents",
                                           field=name)
        raise ScoringError.bad_request(f"input '{name}' has datatype {datatype!r}; use one of "
                                       f"{', '.join([*RAW_DTYPES, 'BYTES'])}", field=name)
    values = getattr(tensor.contents, _TYPED[datatype])
    if len(values) != count:
        raise ScoringError.bad_request(f"input '{name}' has {len(values)} values but its shape {shape} needs "
                                       f"{count}", field=name, rule=V2_DATA_COUNT)
    if datatype == "BYTES":
        flat = np.empty(count, dtype=object)
        flat[:] = list(values)
        flat = utf8_texts(flat, name)
    else:
        flat = np.asarray(values, dtype=RAW_DTYPES[datatype])
    return {"name": name, "shape": shape, "datatype": datatype, "_flat": flat}


# ------------------------------------------------------------------------------------------- service


class InferenceServicer(pb_grpc.GRPCInferenceServiceServicer):
    """The service, answered by a loaded :class:`~pyml_jupyter.serving.app.ModelServer`."""

    def __init__(self, server: Any) -> None:
        self.server = server

    def _count(self, method: str, status: int, error_code: str | None = None) -> None:
        route = f"/{SERVICE}/{method}"
        self.server.metrics.observe_request(route, "GRPC", status)
        if error_code is not None:
            self.server.metrics.observe_error(route, error_code)

    def _model_error(self, name: str, version: str) -> ScoringError | None:
        server = self.server
        if name != server.model_name:
            return ScoringError(404, "NOT_FOUND", f"No model named {name!r}; this server serves {server.model_name!r}")
        if version and version != server.model_version:
            return ScoringError(404, "NOT_FOUND", f"Model {name!r} has no version {version!r}; it serves version "
                                                  f"{server.model_version!r}")
        return None

    async def _abort(self, context: Any, method: str, error: ScoringError) -> None:
        self._count(method, error.status, error.error_code)
        await context.abort(_STATUS.get(error.status, grpc.StatusCode.INTERNAL), error.message)

    async def ServerLive(self, request, context):  # noqa: N802 - the protocol's names
        self._count("ServerLive", 200)
        return pb.ServerLiveResponse(live=True)

    async def ServerReady(self, request, context):  # noqa: N802
        ready = self.server.model is not None
        self._count("ServerReady", 200 if ready else 503)
        return pb.ServerReadyResponse(ready=ready)

    async def ModelReady(self, request, context):  # noqa: N802
        error = self._model_error(request.name, request.version)
        if error is not None:
            await self._abort(context, "ModelReady", error)
        self._count("ModelReady", 200)
        return pb.ModelReadyResponse(ready=self.server.model is not None)

    async def ServerMetadata(self, request, context):  # noqa: N802
        meta = scoring.loads(self.server._static["v2_server"])
        self._count("ServerMetadata", 200)
        return pb.ServerMetadataResponse(name=meta["name"], version=meta["version"], extensions=meta["extensions"])

    async def ModelMetadata(self, request, context):  # noqa: N802
        error = self._model_error(request.name, request.version)
        if error is not None:
            await self._abort(context, "ModelMetadata", error)
        meta = self.server.v2_model_metadata()
        tensors = lambda items: [pb.ModelMetadataResponse.TensorMetadata(**t) for t in items]  # noqa: E731
        self._count("ModelMetadata", 200)
        return pb.ModelMetadataResponse(name=meta["name"], versions=meta["versions"], platform=meta["platform"],
                                        inputs=tensors(meta["inputs"]), outputs=tensors(meta["outputs"]))

    def _read(self, request: Any, timings: dict[str, float]) -> Any:
        started = time.perf_counter()
        raw = request.raw_input_contents
        if raw and len(raw) != len(request.inputs):
            raise ScoringError.bad_request(f"raw_input_contents has {len(raw)} entries for {len(request.inputs)} "
                                           "inputs: give one per input, in order")
        names = [t.name for t in request.inputs]
        if len(set(names)) != len(names):
            raise ScoringError.bad_request("an input is given twice", rule=V2_ONCE)
        inputs = [decode_tensor(t, raw[i] if raw else None) for i, t in enumerate(request.inputs)]
        parsed = time.perf_counter()
        timings["parse"] = parsed - started
        data = scoring.v2_input(self.server.model, inputs, self.server.limits)
        timings["validate"] = time.perf_counter() - parsed
        return data

    def _write(self, request: Any, output: Any, timings: dict[str, float]) -> Any:
        started = time.perf_counter()
        # numeric columns go from their arrays to raw bytes; anything else through the V2 JSON values
        outputs = numeric_outputs(output) or scoring.v2_outputs(self.server.model, output)
        outputs = requested_outputs(outputs, [o.name for o in request.outputs])
        response = pb.ModelInferResponse(model_name=self.server.model_name,
                                         model_version=self.server.model_version or "", id=request.id)
        for o in outputs:
            response.outputs.add(name=o["name"], datatype=o["datatype"], shape=o["shape"])
            response.raw_output_contents.append(encode_tensor(o))
        timings["serialize"] = time.perf_counter() - started
        return response

    async def ModelInfer(self, request, context, arrival: Arrival | None = None):  # noqa: N802
        """``arrival``: this call's place among the requests on their way to the batcher (see
        :class:`_ArrivalInterceptor`), left just before it queues (it queues under the batcher's settle rule, which
        looks again while others are on their way) or as it fails."""
        server = self.server
        timings: dict[str, float] = {}
        try:
            error = self._model_error(request.model_name, request.model_version)
            if error is not None:
                raise error
            nbytes = request.ByteSize()
            if arrival is not None and nbytes > PARSE_THREAD_BYTES:
                arrival.leave()  # parsed off the event loop: no batch should wait for it meanwhile
            data = await server.parse(nbytes, self._read, request, timings)
            if arrival is not None:
                arrival.leave()
            output = await server.batcher.predict(data, nbytes, timings)
            response = self._write(request, output, timings)
        except ScoringError as exc:
            if arrival is not None:
                arrival.leave()  # a bad request never queues: no batch waits for it
            server.metrics.observe_phases(f"/{SERVICE}/ModelInfer", timings)
            await self._abort(context, "ModelInfer", exc)
        except Exception as exc:  # noqa: BLE001 - never let an unexpected failure escape as a bare error
            if arrival is not None:
                arrival.leave()
            error_id = os.urandom(8).hex()
            logger.error("ModelInfer failed (error_id=%s)", error_id, exc_info=True)
            await self._abort(context, "ModelInfer", ScoringError(500, "INTERNAL_ERROR", f"{type(exc).__name__} "
                                                                  f"(error_id={error_id})"))
        server.metrics.observe_phases(f"/{SERVICE}/ModelInfer", timings)
        self._count("ModelInfer", 200)
        return response


# ------------------------------------------------------------------------------------------- server


class _OnItsWay:
    """A ModelInfer call counted among the requests on their way to the batcher. Dropped with the call's handler,
    it leaves the count, should grpc end the call before the handler runs (the client went away meanwhile)."""

    __slots__ = ("arrival",)

    def __init__(self, arrival: Arrival) -> None:
        self.arrival = arrival

    def __del__(self) -> None:
        self.arrival.leave()


class _ArrivalInterceptor(aio.ServerInterceptor):
    """Counts a ModelInfer call as on its way to the batcher from the moment grpc starts it, before its message
    is read (reading it takes a trip through grpc's completion queue thread and another turn of the event loop),
    so a free model's batch waits for it as for an HTTP request that the server has read (see
    :class:`~pyml_jupyter.serving.batching.Arrivals`). Without it, calls answered together came back one by one
    and the first took the free model alone (measured: 1.8-2.5 requests per predict at c=16 against 2.7-3.5
    with it, in interleaved runs on a loaded machine)."""

    def __init__(self, arrivals: Arrivals) -> None:
        self.arrivals = arrivals

    async def intercept_service(self, continuation: Any, details: Any) -> Any:  # noqa: D102 - grpc's signature
        handler = await continuation(details)
        if handler is None or details.method != _INFER_METHOD or handler.unary_unary is None:
            return handler
        infer, on_its_way = handler.unary_unary, _OnItsWay(self.arrivals.expect())

        async def counted(request: Any, context: Any) -> Any:
            return await infer(request, context, on_its_way.arrival)

        return handler._replace(unary_unary=counted)


def _claim_socket(path: str) -> bool:
    """True in the one worker that serves the Unix socket (it holds ``PATH.lock`` until it exits)."""
    handle = os.open(path + ".lock", os.O_CREAT | os.O_RDWR, 0o600)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(handle)
        return False
    _claim_socket.handles.append(handle)  # kept open (and locked) for the life of the process
    return True


_claim_socket.handles = []  # type: ignore[attr-defined]


async def start_grpc_server(server: Any, *, port: int | None = None, uds: str | None = None,
                            host: str | None = None) -> aio.Server:
    """Start serving ``server`` (a loaded ModelServer) over gRPC on ``host:port`` and/or the Unix socket ``uds``."""
    limit = server.max_body_bytes  # the same limit as an HTTP body (PYML_MAX_BODY_BYTES): RESOURCE_EXHAUSTED beyond
    token = grpc_interceptor(server.access)  # the bearer token, when the server has one
    interceptors = [*([token] if token else []), _ArrivalInterceptor(server.batcher.arrivals)]  # the count innermost
    grpc_server = aio.server(interceptors=interceptors, options=[("grpc.max_receive_message_length", limit),
                                                                 ("grpc.max_send_message_length", -1)])
    pb_grpc.add_GRPCInferenceServiceServicer_to_server(InferenceServicer(server), grpc_server)
    where = []
    if port is not None:
        address = f"{host or os.environ.get('PYML_GRPC_HOST') or '127.0.0.1'}:{port}"
        if grpc_server.add_insecure_port(address) == 0:
            raise RuntimeError(f"cannot listen for gRPC on {address}")
        where.append(address)
    if uds and _claim_socket(uds):
        if os.path.exists(uds):
            os.unlink(uds)  # left by an earlier run: this worker holds the lock now
        grpc_server.add_insecure_port(f"unix:{uds}")
        where.append(f"unix:{uds}")
    await grpc_server.start()
    logger.info("gRPC (%s) on %s", SERVICE, ", ".join(where) or "no address (another worker serves the socket)")
    return grpc_server
