"""The Open Inference Protocol's binary tensor data extension over HTTP, spoken by Triton's own client
(tritonclient.http) to a real server: binary and JSON inputs and outputs, requested-output subsets and
parameters give the same predictions as plain JSON; malformed binary requests get a 400 naming the part."""

from __future__ import annotations

import importlib
import http.client
import json
import struct
from pathlib import Path

import numpy as np
import pytest

tritonclient_http = importlib.import_module("tritonclient.http")  # a test dependency: missing is an error
from tritonclient.utils import InferenceServerException  # noqa: E402

from conftest import example_frame  # noqa: E402
from processes import serving  # noqa: E402
from test_serving_app import write_tensor_package  # noqa: E402


def serve(package: Path, name: str):
    with serving(package, "--model-name", name, "--log-level", "warning") as server:
        yield server.port


@pytest.fixture(scope="module")
def example(tmp_path_factory):
    from conftest import write_example_package

    yield from serve(write_example_package(tmp_path_factory.mktemp("example") / "package"), "example")


@pytest.fixture(scope="module")
def tensor(tmp_path_factory):
    yield from serve(write_tensor_package(tmp_path_factory.mktemp("tensor") / "tensor"), "doubler")


def client(port: int):
    return tritonclient_http.InferenceServerClient(f"127.0.0.1:{port}")


def frame_inputs(frame, binary: bool) -> list:
    inputs = []
    for name, datatype, values in (("x1", "FP64", frame["x1"].to_numpy(np.float64)),
                                   ("x2", "FP64", frame["x2"].to_numpy(np.float64)),
                                   ("city", "BYTES", frame["city"].to_numpy(object))):
        tensor = tritonclient_http.InferInput(name, [len(frame)], datatype)
        tensor.set_data_from_numpy(values, binary_data=binary)
        inputs.append(tensor)
    return inputs


def json_predictions(port: int, frame) -> dict:
    """The same rows through plain JSON /invocations: the reference."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    body = {"dataframe_split": {"columns": list(frame.columns), "data": frame.astype(object).values.tolist()}}
    connection.request("POST", "/invocations", body=json.dumps(body), headers={"Content-Type": "application/json"})
    records = json.loads(connection.getresponse().read())["predictions"]
    return {"score": [r["score"] for r in records], "label": [r["label"] for r in records]}


@pytest.mark.parametrize("binary_in", [True, False], ids=["binary-inputs", "json-inputs"])
@pytest.mark.parametrize("binary_out", [True, False], ids=["binary-outputs", "json-outputs"])
def test_a_dataframe_model_answers_triton_with_binary_or_json_data_alike(example, binary_in, binary_out):
    frame = example_frame(12, seed=3)
    expected = json_predictions(example, frame)
    outputs = [tritonclient_http.InferRequestedOutput(name, binary_data=binary_out) for name in ("score", "label")]
    result = client(example).infer("example", frame_inputs(frame, binary_in), outputs=outputs)
    assert result.as_numpy("score").tolist() == expected["score"]  # bit for bit
    assert result.as_numpy("label").tolist() == expected["label"]
    assert result.as_numpy("label").dtype == np.int64
    response = result.get_response()
    for output in response["outputs"]:
        assert ("data" in output) is not binary_out
        assert ("binary_data_size" in output.get("parameters", {})) is binary_out


def test_without_requested_outputs_the_client_gets_every_output_in_binary(example):
    frame = example_frame(5, seed=4)
    result = client(example).infer("example", frame_inputs(frame, True))  # binary_data_output: true
    response = result.get_response()
    assert [o["name"] for o in response["outputs"]] == ["score", "label"]
    assert all(o["parameters"]["binary_data_size"] > 0 and "data" not in o for o in response["outputs"])
    assert result.as_numpy("score").tolist() == json_predictions(example, frame)["score"]


def test_a_requested_subset_comes_back_alone_each_in_the_form_asked(example):
    frame = example_frame(6, seed=5)
    expected = json_predictions(example, frame)
    only_label = [tritonclient_http.InferRequestedOutput("label", binary_data=True)]
    result = client(example).infer("example", frame_inputs(frame, True), outputs=only_label)
    assert [o["name"] for o in result.get_response()["outputs"]] == ["label"]
    assert result.as_numpy("label").tolist() == expected["label"] and result.as_numpy("score") is None

    mixed = [tritonclient_http.InferRequestedOutput("label", binary_data=False),
             tritonclient_http.InferRequestedOutput("score", binary_data=True)]
    result = client(example).infer("example", frame_inputs(frame, False), outputs=mixed, request_id="req-7")
    response = result.get_response()
    assert [o["name"] for o in response["outputs"]] == ["label", "score"] and response["id"] == "req-7"
    assert response["outputs"][0]["data"] == expected["label"]
    assert result.as_numpy("score").tolist() == expected["score"]


def test_request_parameters_are_accepted(example):
    frame = example_frame(3, seed=6)
    result = client(example).infer("example", frame_inputs(frame, True), parameters={"tenant": "a", "trace": 3})
    assert result.as_numpy("label").tolist() == json_predictions(example, frame)["label"]


def test_input_and_output_parameters_besides_binary_ones_are_accepted(tensor):
    x = np.ones(3, dtype="<f4").tobytes()
    header = {"id": "p", "parameters": {"tenant": "a"},
              "inputs": [{**x_input(12), "parameters": {"binary_data_size": 12, "note": "kept"}}],
              "outputs": [{"name": "total", "parameters": {"binary_data": False, "classification": 0}}]}
    status, body = raw_infer(tensor, header, x)
    assert status == 200 and body["outputs"] == [{"name": "total", "datatype": "FP32", "shape": [1], "data": [3.0]}]


def test_an_unknown_requested_output_is_a_400_naming_it(example):
    frame = example_frame(2)
    with pytest.raises(InferenceServerException) as error:
        client(example).infer("example", frame_inputs(frame, True),
                              outputs=[tritonclient_http.InferRequestedOutput("nope")])
    assert "nope" in error.value.message() and error.value.status() == "400"


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_a_tensor_model_round_trips_float32_tensors(tensor, binary):
    x = np.arange(12, dtype=np.float32).reshape(4, 3) / np.float32(7)
    tensor_input = tritonclient_http.InferInput("x", [4, 3], "FP32")
    tensor_input.set_data_from_numpy(x, binary_data=binary)
    outputs = [tritonclient_http.InferRequestedOutput(n, binary_data=binary) for n in ("y", "total")]
    result = client(tensor).infer("doubler", [tensor_input], outputs=outputs)
    assert result.as_numpy("y").dtype == np.float32 and np.array_equal(result.as_numpy("y"), x * np.float32(2))
    assert np.array_equal(result.as_numpy("total"), x.sum(axis=1))


def test_the_server_lists_the_extension(example):
    assert "binary_tensor_data" in client(example).get_server_metadata()["extensions"]


# ------------------------------------------------------------------------------------------ malformed


def raw_infer(port: int, header: dict, binary: bytes, *, length: str | None = None,
              content_type: str | None = None) -> tuple[int, dict]:
    head = json.dumps(header).encode()
    headers = {"Inference-Header-Content-Length": length if length is not None else str(len(head))}
    if content_type:
        headers["Content-Type"] = content_type
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    connection.request("POST", "/v2/models/doubler/infer", body=head + binary, headers=headers)
    response = connection.getresponse()
    return response.status, json.loads(response.read())


def x_input(size: int, shape=(1, 3)) -> dict:
    return {"name": "x", "datatype": "FP32", "shape": list(shape), "parameters": {"binary_data_size": size}}


def test_binary_data_that_does_not_fit_its_tensor_is_a_400_naming_the_input(tensor):
    good = np.ones(3, dtype="<f4").tobytes()
    status, body = raw_infer(tensor, {"inputs": [x_input(12)]}, good, content_type="application/octet-stream")
    assert status == 200 and body["outputs"][0]["data"] == [2.0, 2.0, 2.0]
    for header, binary, words in (
        ({"inputs": [x_input(8)]}, good[:8], ["x", "8 raw bytes"]),
        ({"inputs": [x_input(24)]}, good, ["x", "24 bytes", "12 remain"]),
        ({"inputs": [x_input(12)]}, good + b"\0\0", ["2 bytes after"]),
        ({"inputs": [{**x_input(12), "data": [1, 2, 3]}]}, good, ["both 'data' and binary_data_size"]),
        ({"inputs": [{**x_input(12), "parameters": {"binary_data_size": "12"}}]}, good, ["binary_data_size"]),
    ):
        status, body = raw_infer(tensor, header, binary)
        assert status == 400, (header, body)
        assert all(w in body["error"] for w in words), body


def test_an_inference_header_length_outside_the_body_is_a_400(tensor):
    good = np.ones(3, dtype="<f4").tobytes()
    for length in ("0", "-3", "abc", "100000"):
        status, body = raw_infer(tensor, {"inputs": [x_input(12)]}, good, length=length)
        assert status == 400 and "Inference-Header-Content-Length" in body["error"], (length, body)


def test_raw_bytes_without_the_header_are_refused_as_a_media_type(tensor):
    connection = http.client.HTTPConnection("127.0.0.1", tensor, timeout=30)
    connection.request("POST", "/v2/models/doubler/infer", body=b"\0\1",
                       headers={"Content-Type": "application/octet-stream"})
    response = connection.getresponse()
    assert response.status == 415 and "application/json" in json.loads(response.read())["error"]


def test_bytes_inputs_in_binary_must_be_utf8(example):
    city = b"\xff\xfe"
    binary = (np.array([0.5], "<f8").tobytes() + np.array([1.0], "<f8").tobytes()
              + struct.pack("<I", len(city)) + city)
    header = {"inputs": [
        {"name": "x1", "datatype": "FP64", "shape": [1], "parameters": {"binary_data_size": 8}},
        {"name": "x2", "datatype": "FP64", "shape": [1], "parameters": {"binary_data_size": 8}},
        {"name": "city", "datatype": "BYTES", "shape": [1], "parameters": {"binary_data_size": 4 + len(city)}}]}
    head = json.dumps(header).encode()
    connection = http.client.HTTPConnection("127.0.0.1", example, timeout=30)
    connection.request("POST", "/v2/models/example/infer", body=head + binary,
                       headers={"Inference-Header-Content-Length": str(len(head))})
    response = connection.getresponse()
    body = json.loads(response.read())
    assert response.status == 400 and "city" in body["error"] and "UTF-8" in body["error"]
