"""A gRPC ModelInfer call counts among the requests on their way to the batcher from the moment grpc starts it
(before its message is read) until it queues or fails, so a free model's batch waits for it as for an HTTP
request the server has read. Served in-process by the real grpc.aio server, called with grpcio's own client."""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc
import numpy as np
import pytest

from pyml_jupyter.serving.app import ModelServer
from pyml_jupyter.serving.batching import Arrivals, Batcher
from pyml_jupyter.serving.grpc_server import encode_tensor, start_grpc_server
from pyml_jupyter.serving.proto import grpc_predict_v2_pb2 as pb
from pyml_jupyter.serving.proto import grpc_predict_v2_pb2_grpc as pb_grpc
from processes import free_port
from test_serving_batching import write_package


def infer_request(xs: list, cities: list, model: str = "echo") -> pb.ModelInferRequest:
    request = pb.ModelInferRequest(model_name=model)
    request.inputs.add(name="x", datatype="INT64", shape=[len(xs)])
    request.raw_input_contents.append(np.asarray(xs, dtype="<i8").tobytes())
    request.inputs.add(name="city", datatype="BYTES", shape=[len(cities)])
    request.raw_input_contents.append(encode_tensor({"datatype": "BYTES", "data": cities}))
    return request


async def _calls(package: Path) -> tuple[list, int, list[int]]:
    server = ModelServer(package, model_name="echo")
    server.load()
    seen: list[int] = []  # the count each time the batcher queued a request
    predict = server.batcher.predict

    async def watched(*args, **kwargs):
        seen.append(server.batcher.arrivals.count)
        return await predict(*args, **kwargs)

    server.batcher.predict = watched
    port = free_port()
    grpc_server = await start_grpc_server(server, port=port)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = pb_grpc.GRPCInferenceServiceStub(channel)
            good = [stub.ModelInfer(infer_request([i], [f"c{i}"])) for i in range(8)]
            bad = [stub.ModelInfer(infer_request([1, 2], ["a"])),  # its inputs disagree on the rows
                   stub.ModelInfer(infer_request([1], ["a"], model="other"))]  # no such model
            cancelled = stub.ModelInfer(infer_request([1], ["a"]))
            cancelled.cancel()
            outcomes = await asyncio.gather(*good, *bad, return_exceptions=True)
        await asyncio.sleep(0.2)  # the cancelled call's handler is dropped by grpc
        return outcomes, server.batcher.arrivals.count, seen
    finally:
        await grpc_server.stop(grace=None)


def test_every_model_infer_call_leaves_the_count_whether_it_succeeds_fails_or_is_cancelled(tmp_path):
    outcomes, count, seen = asyncio.run(_calls(write_package(tmp_path / "echo")))

    answers, errors = outcomes[:8], outcomes[8:]
    assert [np.frombuffer(a.raw_output_contents[0], "<i8").tolist() for a in answers] == [[2 * i] for i in range(8)]  # y = 2x
    assert [e.code() for e in errors] == [grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND]
    assert count == 0  # none stays counted: a batch never waits for a call that will not come
    assert len(seen) == 8 and all(c >= 0 for c in seen)


def test_a_free_models_batch_waits_for_requests_counted_on_their_way():
    async def scenario() -> list[int]:
        arrivals = Arrivals()
        sizes: list[int] = []
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(1) as executor:
            batcher = Batcher(lambda rows: rows, lambda rows: rows, executor=executor, batching=True,
                              arrivals=arrivals, observe=lambda rows, requests, waits: sizes.append(requests))
            on_its_way = arrivals.expect()  # a second request has been started but not read yet

            async def second():
                await asyncio.sleep(0)  # its message comes a turn of the event loop later
                await asyncio.sleep(0)
                on_its_way.leave()
                return await batcher.predict({"x": np.array([2])})

            await asyncio.gather(batcher.predict({"x": np.array([1])}), second())
        return sizes

    assert asyncio.run(scenario()) == [2]  # one predict for both, not the first alone
