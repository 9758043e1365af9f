"""The Open Inference Protocol over gRPC, spoken by Triton's own client (tritonclient[grpc]) to a real server
(``python -m pyml_jupyter.serving --grpc-port --grpc-uds``), compared with the HTTP answers for the same rows."""

from __future__ import annotations

import importlib
import http.client
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import numpy as np
import pytest

tritonclient_grpc = importlib.import_module("tritonclient.grpc")  # a test dependency: missing is an error
from tritonclient.grpc import service_pb2, service_pb2_grpc  # noqa: E402
from tritonclient.utils import InferenceServerException  # noqa: E402

from conftest import example_frame  # noqa: E402
from processes import free_port, serving  # noqa: E402
from test_serving_app import write_tensor_package  # noqa: E402
from test_serving_batching import write_package  # noqa: E402

JSON = {"Content-Type": "application/json"}


class Served:
    def __init__(self, http_port: int, grpc_port: int, uds: str, name: str) -> None:
        self.http_port, self.grpc_port, self.uds, self.name = http_port, grpc_port, uds, name

    def client(self, uds: bool = False):
        return tritonclient_grpc.InferenceServerClient(f"unix:{self.uds}" if uds else f"127.0.0.1:{self.grpc_port}")

    def http(self, method: str, path: str, body: dict | None = None) -> dict:
        connection = http.client.HTTPConnection("127.0.0.1", self.http_port, timeout=30)
        connection.request(method, path, body=None if body is None else json.dumps(body), headers=JSON)
        response = connection.getresponse()
        payload = json.loads(response.read())
        assert response.status == 200, payload
        return payload


def serve(package: Path, tmp_path: Path, name: str, workers: int = 1):
    grpc_port, uds = free_port(), str(tmp_path / f"{name}.sock")
    with serving(package, "--grpc-port", str(grpc_port), "--grpc-uds", uds, "--model-name", name, "--model-version",
                 "2", "--workers", str(workers), "--log-level", "warning") as server:
        yield Served(server.port, grpc_port, uds, name)


@pytest.fixture
def example(example_package: Path, tmp_path: Path):
    yield from serve(example_package, tmp_path, "example")


@pytest.fixture
def tensor(tmp_path: Path):
    yield from serve(write_tensor_package(tmp_path / "tensor"), tmp_path, "doubler")


@pytest.fixture
def echo(tmp_path: Path):
    yield from serve(write_package(tmp_path / "echo"), tmp_path, "echo", workers=2)


def frame_inputs(frame) -> list:
    x1 = tritonclient_grpc.InferInput("x1", [len(frame)], "FP64")
    x1.set_data_from_numpy(frame["x1"].to_numpy(np.float64))
    x2 = tritonclient_grpc.InferInput("x2", [len(frame)], "FP64")
    x2.set_data_from_numpy(frame["x2"].to_numpy(np.float64))
    city = tritonclient_grpc.InferInput("city", [len(frame)], "BYTES")
    city.set_data_from_numpy(frame["city"].to_numpy(object))
    return [x1, x2, city]


def http_predictions(served: Served, frame) -> list[dict]:
    split = {"columns": list(frame.columns), "data": frame.astype(object).values.tolist()}
    return served.http("POST", "/invocations", {"dataframe_split": split})["predictions"]


# ------------------------------------------------------------------------------------ health, metadata


def test_live_ready_and_model_ready_over_tcp_and_the_unix_socket(example):
    for uds in (False, True):
        client = example.client(uds=uds)
        assert client.is_server_live() and client.is_server_ready()
        assert client.is_model_ready("example") and client.is_model_ready("example", "2")
        with pytest.raises(InferenceServerException, match="No model named 'other'"):
            client.is_model_ready("other")


def test_metadata_matches_the_http_v2_metadata(example):
    client = example.client()
    server = client.get_server_metadata(as_json=True)
    model = client.get_model_metadata("example", as_json=True)
    http_model = example.http("GET", "/v2/models/example")

    assert server["name"] == example.http("GET", "/v2")["name"]
    assert model["name"] == "example" and model["versions"] == ["2"] and model["platform"] == http_model["platform"]
    for key in ("inputs", "outputs"):
        assert [{**t, "shape": [int(d) for d in t["shape"]]} for t in model[key]] == http_model[key]


# ----------------------------------------------------------------------------------------------- infer


def test_infer_with_raw_contents_answers_like_http(example):
    frame = example_frame(6, seed=5)
    result = example.client().infer("example", frame_inputs(frame), request_id="r1", model_version="2")
    expected = http_predictions(example, frame)

    assert result.get_response().id == "r1" and result.get_response().model_version == "2"
    assert result.as_numpy("score").tolist() == [p["score"] for p in expected]
    assert result.as_numpy("label").tolist() == [p["label"] for p in expected]


def test_infer_over_the_unix_socket_answers_like_tcp(example):
    frame = example_frame(4, seed=6)
    tcp = example.client().infer("example", frame_inputs(frame))
    uds = example.client(uds=True).infer("example", frame_inputs(frame))
    assert np.array_equal(tcp.as_numpy("score"), uds.as_numpy("score"))


def test_infer_with_typed_contents_answers_like_http(example):
    frame = example_frame(3, seed=7)
    request = service_pb2.ModelInferRequest(model_name="example", id="typed")
    for name in ("x1", "x2"):
        tensor = request.inputs.add(name=name, datatype="FP64", shape=[3])
        tensor.contents.fp64_contents.extend(frame[name].tolist())
    city = request.inputs.add(name="city", datatype="BYTES", shape=[3, 1])
    city.contents.bytes_contents.extend(c.encode() for c in frame["city"])
    request.outputs.add(name="label")
    with grpc.insecure_channel(f"127.0.0.1:{example.grpc_port}") as channel:
        response = service_pb2_grpc.GRPCInferenceServiceStub(channel).ModelInfer(request)

    assert [o.name for o in response.outputs] == ["label"] and list(response.outputs[0].shape) == [3]
    labels = np.frombuffer(response.raw_output_contents[0], dtype="<i8").tolist()
    assert labels == [p["label"] for p in http_predictions(example, frame)]


def test_tensor_model_infer_raw_and_typed_like_http(tensor):
    x = np.array([[1.5, 2, 3], [4, 5, 6.25]], dtype=np.float32)
    raw_input = tritonclient_grpc.InferInput("x", list(x.shape), "FP32")
    raw_input.set_data_from_numpy(x)
    raw = tensor.client().infer("doubler", [raw_input])
    request = service_pb2.ModelInferRequest(model_name="doubler")
    request.inputs.add(name="x", datatype="FP32", shape=[2, 3]).contents.fp32_contents.extend(x.ravel().tolist())
    with grpc.insecure_channel(f"127.0.0.1:{tensor.grpc_port}") as channel:
        typed = service_pb2_grpc.GRPCInferenceServiceStub(channel).ModelInfer(request)
    http_answer = tensor.http("POST", "/invocations", {"inputs": {"x": x.tolist()}})["predictions"]

    assert raw.as_numpy("y").tolist() == http_answer["y"] == (x * 2).tolist()
    assert raw.as_numpy("total").tolist() == http_answer["total"]
    names = [o.name for o in typed.outputs]
    assert np.frombuffer(typed.raw_output_contents[names.index("y")], "<f4").reshape(2, 3).tolist() == http_answer["y"]


# ---------------------------------------------------------------------------------------------- errors


def test_bad_requests_get_invalid_argument_naming_the_input_and_the_server_keeps_serving(example):
    client = example.client()
    frame = example_frame(2)
    inputs = frame_inputs(frame)
    with pytest.raises(InferenceServerException, match="city") as missing:
        client.infer("example", inputs[:2])
    assert missing.value.status() == "StatusCode.INVALID_ARGUMENT"
    wrong = tritonclient_grpc.InferInput("x1", [2], "BYTES")
    wrong.set_data_from_numpy(np.array(["a", "b"], dtype=object))
    with pytest.raises(InferenceServerException, match="x1"):
        client.infer("example", [wrong, *inputs[1:]])
    with pytest.raises(InferenceServerException, match="No model named") as unknown:
        client.infer("nope", inputs)
    assert unknown.value.status() == "StatusCode.NOT_FOUND"
    with pytest.raises(InferenceServerException, match="unknown output"):
        client.infer("example", inputs, outputs=[tritonclient_grpc.InferRequestedOutput("nope")])

    assert client.infer("example", inputs).as_numpy("label").shape == (2,)


# --------------------------------------------------------------------------------- batching, both faces


def test_concurrent_grpc_and_http_requests_each_get_exactly_their_rows(echo):
    rng = np.random.default_rng(0)
    batches = [rng.integers(0, 10**9, size=n) for n in [1, 30, 2, 1, 7, 1, 100, 3] * 6]

    def one(i: int):
        xs = batches[i]
        n = len(xs)
        if i % 2:
            rows = [[int(x), f"c{i}"] for x in xs]
            got = echo.http("POST", "/invocations", {"dataframe_split": {"columns": ["x", "city"], "data": rows}})
            return [p["y"] for p in got["predictions"]], (xs * 2).tolist()
        x = tritonclient_grpc.InferInput("x", [n], "INT64")
        x.set_data_from_numpy(xs.astype(np.int64))
        city = tritonclient_grpc.InferInput("city", [n], "BYTES")
        city.set_data_from_numpy(np.array([f"c{i}"] * n, dtype=object))
        result = echo.client().infer("echo", [x, city])
        assert result.as_numpy("tag").tolist() == [f"c{i}!".encode()] * n
        return result.as_numpy("y").tolist(), (xs * 2).tolist()

    with ThreadPoolExecutor(16) as pool:
        for got, want in pool.map(one, range(len(batches))):
            assert got == want


def test_numeric_output_columns_go_to_raw_contents_from_their_arrays_and_text_columns_do_not():
    import pandas as pd

    from pyml_jupyter.serving.raw_tensors import encode_tensor
    from pyml_jupyter.serving.v2 import numeric_outputs

    frame = pd.DataFrame({"price": [1.5, float("nan")], "rooms": [3, 4], "ok": [True, False]}, index=[7, 9])
    outputs = numeric_outputs(frame)
    assert [(o["name"], o["datatype"], o["shape"]) for o in outputs] == [
        ("price", "FP64", [2]), ("rooms", "INT64", [2]), ("ok", "BOOL", [2])]
    assert np.frombuffer(encode_tensor(outputs[0]), "<f8")[0] == 1.5
    assert np.isnan(np.frombuffer(encode_tensor(outputs[0]), "<f8")[1])
    assert np.frombuffer(encode_tensor(outputs[1]), "<i8").tolist() == [3, 4]
    assert numeric_outputs(frame.assign(tag=["a", "b"])) is None
