"""The serving runtime's HTTP side: MLflow's /invocations, the Open Inference Protocol (V2), metadata,
OpenAPI, metrics and errors, in-process with Starlette's TestClient; then a real multi-worker uvicorn."""

from __future__ import annotations

import http.client
import importlib.util
import io
import json
import logging
import statistics
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from starlette.testclient import TestClient

from pyml_jupyter.serving import scoring
from pyml_jupyter.serving.app import app_from_env, create_app
from pyml_jupyter.serving.loader import load_package

from conftest import EXAMPLE_MODEL_SOURCE, write_example_package
from processes import serving

JSON = {"Content-Type": "application/json"}


# ----------------------------------------------------------------------------------------- fixtures


@pytest.fixture
def client(example_package: Path):
    with TestClient(create_app(example_package, model_name="example", model_version="3", run_id="r123")) as c:
        yield c


@pytest.fixture
def sample(example_package: Path) -> pd.DataFrame:
    return load_package(example_package).info.read_sample()


@pytest.fixture
def expected(example_package: Path, sample: pd.DataFrame) -> list[dict]:
    """What load_package(p).predict(sample) gives, as records."""
    out = load_package(example_package).predict(sample)
    return [{"score": float(s), "label": int(lbl)} for s, lbl in zip(out["score"], out["label"])]


def write_tensor_package(directory: Path) -> Path:
    """A TensorModel package written by hand: y = 2x (float32, shape [n, 3]) and total = sum of x's rows."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "model.py").write_text(textwrap.dedent(
        """
        import numpy as np
        from pyml_jupyter.serving.contract import TensorModel


        class Doubler(TensorModel):
            def predict(self, tensors):
                x = tensors["x"]
                return {"y": x * np.float32(2), "total": x.sum(axis=1)}
        """
    ))
    (directory / "sample.json").write_text(json.dumps({"x": [[1.0, 2.0, 3.0], [4.0, 5.0, 6.5]]}))
    (directory / "requirements.txt").write_text(f"numpy=={np.__version__}\n")
    contract = {
        "format_version": 1, "kind": "tensor", "class_name": "Doubler",
        "python_version": ".".join(map(str, sys.version_info[:3])),
        "input_schema": {"type": "tensor", "tensors": [{"name": "x", "dtype": "float32", "shape": [None, 3]}]},
        "output_schema": {"type": "tensor", "tensors": [{"name": "y", "dtype": "float32", "shape": [None, 3]},
                                                        {"name": "total", "dtype": "float32", "shape": [None]}]},
        "artifacts": {}, "takes_artifacts": False, "metadata": {},
    }
    (directory / "pyml.json").write_text(json.dumps(contract, indent=2))
    return directory


@pytest.fixture
def tensor_client(tmp_path: Path):
    with TestClient(create_app(write_tensor_package(tmp_path / "tensor"), model_version="1")) as c:
        yield c


@pytest.fixture
def fragile_client(tmp_path: Path):
    """The example model, except that its predict raises when x1 is above 1e6."""
    package = write_example_package(tmp_path / "fragile")
    source = EXAMPLE_MODEL_SOURCE.replace(
        "    def predict(self, df):\n",
        "    def predict(self, df):\n        if (df['x1'] > 1e6).any():\n"
        "            raise RuntimeError('x1 is out of range')\n",
    )
    assert source != EXAMPLE_MODEL_SOURCE
    (package / "model.py").write_text(source)
    with TestClient(create_app(package)) as c:
        yield c


def split(frame: pd.DataFrame) -> dict:
    return {"columns": list(frame.columns), "data": frame.astype(object).values.tolist()}


def assert_still_serving(client: TestClient) -> None:
    r = client.post("/invocations", json={"dataframe_records": [{"x1": 0.5, "x2": -1.0, "city": "nice"}]})
    assert r.status_code == 200, r.text
    assert len(r.json()["predictions"]) == 1


def assert_scores(predictions: list[dict], expected: list[dict]) -> None:
    assert [p["label"] for p in predictions] == [e["label"] for e in expected]
    assert [p["score"] for p in predictions] == pytest.approx([e["score"] for e in expected], rel=1e-12)
    assert all(set(p) == {"score", "label"} for p in predictions)


# ------------------------------------------------------------------------------ MLflow /invocations


def test_dataframe_split_predicts_like_load_package(client, sample, expected):
    r = client.post("/invocations", json={"dataframe_split": split(sample)})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/json"
    assert_scores(r.json()["predictions"], expected)


def test_dataframe_split_with_index_and_positional_columns(client, sample, expected):
    with_index = dict(split(sample), index=list(range(10, 10 + len(sample))))
    assert_scores(client.post("/invocations", json={"dataframe_split": with_index}).json()["predictions"], expected)
    positional = {"data": split(sample)["data"]}  # pandas' split orientation without "columns"
    assert_scores(client.post("/invocations", json={"dataframe_split": positional}).json()["predictions"], expected)


def test_dataframe_records_predicts_like_load_package(client, sample, expected):
    records = sample.astype(object).to_dict(orient="records")
    r = client.post("/invocations", json={"dataframe_records": records})
    assert r.status_code == 200, r.text
    assert_scores(r.json()["predictions"], expected)


def test_instances_records_predict_like_load_package(client, sample, expected):
    r = client.post("/invocations", json={"instances": sample.astype(object).to_dict(orient="records")})
    assert r.status_code == 200, r.text
    assert_scores(r.json()["predictions"], expected)


def test_inputs_columns_predict_like_load_package(client, sample, expected):
    r = client.post("/invocations", json={"inputs": sample.astype(object).to_dict(orient="list")})
    assert r.status_code == 200, r.text
    assert_scores(r.json()["predictions"], expected)


def test_csv_predicts_like_load_package(client, sample, expected):
    r = client.post("/invocations", content=sample.to_csv(index=False).encode(),
                    headers={"Content-Type": "text/csv; charset=utf-8"})
    assert r.status_code == 200, r.text
    assert_scores(r.json()["predictions"], expected)


def test_response_is_byte_compatible_with_mlflow_scoring_server(client, example_package, sample):
    from mlflow.pyfunc.scoring_server import predictions_to_json

    out = load_package(example_package).predict(sample)
    theirs = io.StringIO()
    predictions_to_json(out, theirs)
    ours = client.post("/invocations", json={"dataframe_split": split(sample)}).json()
    assert ours == json.loads(theirs.getvalue())


def test_missing_content_type_is_read_as_json(client, sample, expected):
    body = json.dumps({"dataframe_split": split(sample)}).encode()
    r = client.post("/invocations", content=body, headers={"Content-Type": ""})
    assert r.status_code == 200, r.text
    assert_scores(r.json()["predictions"], expected)


def test_tensor_model_inputs_and_instances(tensor_client):
    r = tensor_client.post("/invocations", json={"inputs": {"x": [[1, 2, 3], [4, 5, 6]]}})
    assert r.status_code == 200, r.text
    assert r.json() == {"predictions": {"y": [[2, 4, 6], [8, 10, 12]], "total": [6, 15]}}
    bare = tensor_client.post("/invocations", json={"inputs": [[1, 2, 3]]})
    assert bare.json() == {"predictions": {"y": [[2, 4, 6]], "total": [6]}}
    instances = tensor_client.post("/invocations", json={"instances": [[1, 2, 3], [0, 0, 1]]})
    assert instances.json() == {"predictions": {"y": [[2, 4, 6], [0, 0, 2]], "total": [6, 1]}}
    named = tensor_client.post("/invocations", json={"instances": [{"x": [1, 2, 3]}]})
    assert named.json() == {"predictions": {"y": [[2, 4, 6]], "total": [6]}}
    none = tensor_client.post("/invocations", json={"instances": []})
    assert none.json() == {"predictions": {"y": [], "total": []}}
    # as in MLflow's scoring server, each {name: example} names every input: one that does not is refused
    lacking = tensor_client.post("/invocations", json={"instances": [{"x": [1, 2, 3]}, {"y": [1, 2, 3]}]})
    assert lacking.status_code == 422 and lacking.json()["problems"][0]["error"].startswith("instance 1 has no")


def test_core_invocations_works_without_the_web_framework(example_package, sample, expected):
    model = load_package(example_package)
    timings: dict[str, float] = {}
    body = json.dumps({"dataframe_split": split(sample)}).encode()
    status, payload, error_code, _ = scoring.invocations(model, body, "application/json", timings)
    assert (status, error_code) == (200, None)
    assert_scores(json.loads(payload)["predictions"], expected)
    assert set(timings) == {"parse", "validate", "predict", "serialize"}
    assert scoring.invocations(model, b"{", "application/json").status == 400


# ------------------------------------------------------------------------- Open Inference Protocol


def test_v2_infer_dataframe_model_one_input_per_column(client, sample, expected):
    n = len(sample)
    request = {"id": "req-1", "inputs": [
        {"name": "x1", "shape": [n], "datatype": "FP64", "data": sample["x1"].tolist()},
        {"name": "x2", "shape": [n, 1], "datatype": "FP64", "data": [[v] for v in sample["x2"]]},
        {"name": "city", "shape": [n], "datatype": "BYTES", "data": sample["city"].tolist()},
    ]}
    r = client.post("/v2/models/example/infer", json=request)
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["model_name"], body["model_version"], body["id"]) == ("example", "3", "req-1")
    outputs = {o["name"]: o for o in body["outputs"]}
    assert outputs["score"]["datatype"] == "FP64" and outputs["score"]["shape"] == [n]
    assert outputs["label"]["datatype"] == "INT64" and outputs["label"]["data"] == [e["label"] for e in expected]
    assert outputs["score"]["data"] == pytest.approx([e["score"] for e in expected], rel=1e-12)
    versioned = client.post("/v2/models/example/versions/3/infer", json=dict(request, outputs=[{"name": "label"}]))
    assert [o["name"] for o in versioned.json()["outputs"]] == ["label"]


def test_v2_infer_tensor_model(tensor_client):
    request = {"inputs": [{"name": "x", "shape": [2, 3], "datatype": "FP32", "data": [1, 2, 3, 4, 5, 6]}]}
    r = tensor_client.post("/v2/models/Doubler/infer", json=request)
    assert r.status_code == 200, r.text
    outputs = {o["name"]: o for o in r.json()["outputs"]}
    assert outputs["y"] == {"name": "y", "datatype": "FP32", "shape": [2, 3], "data": [2, 4, 6, 8, 10, 12]}
    assert outputs["total"] == {"name": "total", "datatype": "FP32", "shape": [2], "data": [6, 15]}
    nested = dict(request["inputs"][0], data=[[1, 2, 3], [4, 5, 6]])
    assert tensor_client.post("/v2/models/Doubler/infer", json={"inputs": [nested]}).json()["outputs"] == \
        r.json()["outputs"]


def test_v2_metadata_lists_inputs_outputs_and_health(client, tensor_client):
    meta = client.get("/v2/models/example").json()
    assert meta["name"] == "example" and meta["versions"] == ["3"]
    assert meta["inputs"] == [{"name": "x1", "datatype": "FP64", "shape": [-1]},
                              {"name": "x2", "datatype": "FP64", "shape": [-1]},
                              {"name": "city", "datatype": "BYTES", "shape": [-1]}]
    assert [o["name"] for o in meta["outputs"]] == ["score", "label"]
    assert tensor_client.get("/v2/models/Doubler").json()["inputs"] == [
        {"name": "x", "datatype": "FP32", "shape": [-1, 3]}]
    assert client.get("/v2/models/example/versions/3").status_code == 200
    assert client.get("/v2/models/example/ready").json() == {"name": "example", "ready": True}
    assert client.get("/v2/health/live").status_code == 200
    assert client.get("/v2/health/ready").json() == {"ready": True}
    server = client.get("/v2").json()
    assert server["name"] == "pyml_jupyter.serving" and "extensions" in server


def test_v2_unknown_model_or_version_is_404_json(client):
    for r in (client.get("/v2/models/other"), client.get("/v2/models/other/ready"),
              client.post("/v2/models/other/infer", json={"inputs": []}),
              client.get("/v2/models/example/versions/9")):
        assert r.status_code == 404
        assert r.json()["error_code"] == "NOT_FOUND" and "error" in r.json()
    assert_still_serving(client)


def test_v2_data_that_does_not_fit_its_shape_is_400_naming_the_input(client):
    request = {"inputs": [{"name": "x1", "shape": [3], "datatype": "FP64", "data": [1.0, 2.0]}]}
    r = client.post("/v2/models/example/infer", json=request)
    assert r.status_code == 400
    assert r.json()["field"] == "x1" and "x1" in r.json()["error"]
    bad_type = {"inputs": [{"name": "x1", "shape": [1], "datatype": "FLOAT", "data": [1.0]}]}
    assert client.post("/v2/models/example/infer", json=bad_type).status_code == 400
    assert_still_serving(client)


def test_v2_schema_violation_is_422_naming_each_field(client, tensor_client):
    request = {"inputs": [{"name": "x1", "shape": [1], "datatype": "BYTES", "data": ["a"]},
                          {"name": "x2", "shape": [1], "datatype": "FP64", "data": [1.0]}]}
    r = client.post("/v2/models/example/infer", json=request)
    assert r.status_code == 422
    assert {p["field"] for p in r.json()["problems"]} == {"x1", "city"}
    wrong_shape = {"inputs": [{"name": "x", "shape": [1, 2], "datatype": "FP32", "data": [1, 2]}]}
    r = tensor_client.post("/v2/models/Doubler/infer", json=wrong_shape)
    assert r.status_code == 422 and r.json()["problems"][0]["field"] == "x"
    assert_still_serving(client)


# --------------------------------------------------------------------------- metadata and OpenAPI


def test_ping_health_and_metadata(client):
    assert client.get("/ping").status_code == 200
    assert client.get("/health").json()["model"] == "example"
    meta = client.get("/metadata").json()
    assert (meta["name"], meta["version"], meta["run_id"]) == ("example", "3", "r123")
    assert (meta["kind"], meta["class_name"]) == ("dataframe", "ExampleModel")
    assert [c["name"] for c in meta["input_schema"]["columns"]] == ["x1", "x2", "city"]
    assert [c["name"] for c in meta["output_schema"]["columns"]] == ["score", "label"]
    assert meta["python_version"].count(".") == 2 and meta["runtime_python_version"]


DOUBLE_MAX = 1.7976931348623157e308


def test_openapi_describes_the_models_columns_with_an_example(client, sample):
    doc = client.get("/openapi.json").json()
    assert doc["openapi"].startswith("3.")
    schemas = doc["components"]["schemas"]
    assert schemas["InputRow"]["properties"] == {
        "x1": {"type": "number", "format": "double", "minimum": -DOUBLE_MAX, "maximum": DOUBLE_MAX,
               "description": "float64"},
        "x2": {"type": "number", "format": "double", "minimum": -DOUBLE_MAX, "maximum": DOUBLE_MAX,
               "description": "float64"},
        "city": {"type": "string", "description": "string"},
    }
    assert set(schemas["OutputRow"]["properties"]) == {"score", "label"}
    assert schemas["OutputRow"]["properties"]["label"]["type"] == "integer"
    content = doc["paths"]["/invocations"]["post"]["requestBody"]["content"]
    assert content["application/json"]["example"]["dataframe_split"]["columns"] == ["x1", "x2", "city"]
    # By default the examples are synthesized from the schema: the sample is real data and stays private.
    assert content["application/json"]["example"]["dataframe_split"]["data"] == [[0.5, 0.5, "text"]]
    assert content["text/csv"]["example"] == "x1,x2,city\n0.5,0.5,text\n"
    assert "/v2/models/example/infer" in doc["paths"]
    # The examples are valid requests.
    assert client.post("/invocations", json=content["application/json"]["example"]).status_code == 200
    csv = client.post("/invocations", content=content["text/csv"]["example"], headers={"Content-Type": "text/csv"})
    assert csv.status_code == 200


def test_openapi_publishes_the_packages_sample_only_when_told_to(example_package, sample, monkeypatch):
    monkeypatch.setenv("PYML_OPENAPI_SAMPLE", "1")
    with TestClient(create_app(example_package, model_name="example")) as c:
        doc = c.get("/openapi.json").json()
    example = doc["paths"]["/invocations"]["post"]["requestBody"]["content"]["application/json"]["example"]
    assert len(example["dataframe_split"]["data"]) == len(sample)
    assert example["dataframe_split"]["data"][0][0] == sample["x1"].iloc[0]


def test_openapi_for_a_tensor_model(tensor_client):
    doc = tensor_client.get("/openapi.json").json()
    inputs, instances = doc["components"]["schemas"]["InvocationsRequest"]["oneOf"]
    named, alone = inputs["properties"]["inputs"]["oneOf"]  # {"x": tensor}, or the one tensor itself
    assert instances["properties"]["instances"]["anyOf"][0] == alone  # or its examples, each {"x": example}
    x = named["properties"]["x"]
    assert x["type"] == "array" and x["items"]["items"]["type"] == "number" and alone == x
    example = doc["paths"]["/invocations"]["post"]["requestBody"]["content"]["application/json"]["example"]
    assert example == {"inputs": {"x": [[0.5, 0.5, 0.5]]}}  # synthesized from the schema, not the sample
    assert tensor_client.post("/invocations", json=example).status_code == 200


# ------------------------------------------------------------------------------------------ metrics


def test_metrics_count_requests_errors_and_phase_latencies(client, sample):
    client.post("/invocations", json={"dataframe_split": split(sample)})
    client.post("/invocations", json={"dataframe_split": split(sample)})
    client.post("/invocations", content=b"{not json", headers=JSON)
    text = client.get("/metrics")
    assert text.headers["content-type"].startswith("text/plain; version=0.0.4")
    lines = text.text.splitlines()
    assert 'pyml_requests_total{route="/invocations",method="POST",status="200"} 2' in lines
    assert 'pyml_requests_total{route="/invocations",method="POST",status="400"} 1' in lines
    assert 'pyml_errors_total{route="/invocations",error_code="BAD_REQUEST"} 1' in lines
    for phase in ("parse", "validate", "predict", "serialize"):
        count = f'pyml_phase_seconds_count{{route="/invocations",phase="{phase}"}}'
        assert any(line.startswith(count) for line in lines), phase
        assert f'pyml_phase_seconds_bucket{{route="/invocations",phase="{phase}",le="+Inf"}}' in text.text
    assert 'pyml_phase_seconds_count{route="/invocations",phase="predict"} 2' in lines
    assert "# TYPE pyml_phase_seconds histogram" in lines
    assert 'pyml_model_info{name="example",version="3",run_id="r123",kind="dataframe"} 1' in lines


def test_histogram_buckets_are_cumulative():
    from pyml_jupyter.serving.metrics import Metrics

    metrics = Metrics(buckets=(0.001, 0.01))
    for seconds in (0.0005, 0.001, 0.005, 2.0):
        metrics.observe_phase("/invocations", "predict", seconds)
    text = metrics.render()
    assert 'pyml_phase_seconds_bucket{route="/invocations",phase="predict",le="0.001"} 2' in text
    assert 'pyml_phase_seconds_bucket{route="/invocations",phase="predict",le="0.01"} 3' in text
    assert 'pyml_phase_seconds_bucket{route="/invocations",phase="predict",le="+Inf"} 4' in text
    assert 'pyml_phase_seconds_sum{route="/invocations",phase="predict"} 2.0065' in text


# ------------------------------------------------------------------------------------------- errors


def test_malformed_json_is_400_and_the_server_keeps_serving(client):
    r = client.post("/invocations", content=b'{"dataframe_split": [1, 2', headers=JSON)
    assert r.status_code == 400
    assert r.json()["error_code"] == "BAD_REQUEST" and "JSON" in r.json()["message"]
    assert_still_serving(client)


def test_json_without_a_known_key_is_400_naming_the_keys(client):
    r = client.post("/invocations", json={"data": [[1, 2, "x"]]})
    assert r.status_code == 400
    assert "dataframe_split" in r.json()["message"] and "'data'" in r.json()["message"]
    assert client.post("/invocations", json=[1, 2]).status_code == 400
    assert_still_serving(client)


def test_malformed_csv_is_400(client):
    r = client.post("/invocations", content=b'x1,x2,city\n1,2,"paris\n', headers={"Content-Type": "text/csv"})
    assert r.status_code == 400 and r.json()["error_code"] == "BAD_REQUEST"
    assert_still_serving(client)


def test_unsupported_content_type_is_415(client):
    r = client.post("/invocations", content=b"x1=1", headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert r.status_code == 415
    assert r.json()["error_code"] == "UNSUPPORTED_MEDIA_TYPE" and "text/csv" in r.json()["message"]
    latin1 = client.post("/invocations", content=b"{}", headers={"Content-Type": "application/json; charset=latin-1"})
    assert latin1.status_code == 415
    v2 = client.post("/v2/models/example/infer", content=b"x1\n1\n", headers={"Content-Type": "text/csv"})
    assert v2.status_code == 415 and v2.json()["error_code"] == "UNSUPPORTED_MEDIA_TYPE"
    assert_still_serving(client)


def test_body_over_the_limit_is_413_from_content_length(example_package):
    with TestClient(create_app(example_package, max_body_bytes=1000)) as small:
        r = small.post("/invocations", content=b" " * 1001, headers=JSON)
        assert r.status_code == 413
        assert r.json()["error_code"] == "PAYLOAD_TOO_LARGE" and "1000" in r.json()["message"]
        assert_still_serving(small)


def test_chunked_body_over_the_limit_is_413_while_reading(example_package):
    def chunks():
        for _ in range(20):
            yield b" " * 100

    with TestClient(create_app(example_package, max_body_bytes=1000)) as small:
        r = small.post("/invocations", content=chunks(), headers=JSON)  # no Content-Length: chunked
        assert r.status_code == 413 and r.json()["error_code"] == "PAYLOAD_TOO_LARGE"
        assert "more than 1000 bytes" in r.json()["message"]
        assert_still_serving(small)


def test_schema_violation_is_422_naming_each_bad_column(client):
    r = client.post("/invocations", json={"dataframe_records": [{"x1": "high", "x2": None}]})
    assert r.status_code == 422
    body = r.json()
    assert body["error_code"] == "SCHEMA_ERROR"
    assert {p["field"] for p in body["problems"]} == {"x1", "x2", "city"}
    assert all(p["field"] in p["error"] for p in body["problems"])
    assert_still_serving(client)


def test_tensor_schema_violation_is_422_naming_the_tensor(tensor_client):
    r = tensor_client.post("/invocations", json={"inputs": {"x": [[1, 2]]}})
    assert r.status_code == 422
    assert [p["field"] for p in r.json()["problems"]] == ["x"]
    assert tensor_client.post("/invocations", json={"inputs": {"x": [[1, 2, 3]]}}).status_code == 200


def test_a_boolean_among_numbers_is_422_naming_the_input_in_every_form(client, tensor_client):
    """JSON's true is no number (the document says so with JSON Schema's number); numpy alone would read it as 1."""
    tensor_bodies = [("/invocations", {"inputs": {"x": [[1.0, True, 3.0]]}}),
                     ("/invocations", {"instances": [[1.0, 2.0, False]]}),
                     ("/v2/models/Doubler/infer", {"inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP32",
                                                               "data": [1.0, True, 3.0]}]})]
    for path, body in tensor_bodies:
        r = tensor_client.post(path, json=body)
        assert r.status_code == 422 and r.json()["problems"][0]["field"] == "x", (path, r.text)
        assert "holds bool values" in r.json()["problems"][0]["error"]
    frame_bodies = [("/invocations", {"dataframe_records": [{"x1": True, "x2": 1.0, "city": "paris"}]}),
                    ("/invocations", {"inputs": {"x1": [0.5, False], "x2": [1.0, 2.0], "city": ["a", "b"]}}),
                    ("/v2/models/example/infer", {"inputs": [
                        {"name": "x1", "shape": [2], "datatype": "FP64", "data": [0.5, True]},
                        {"name": "x2", "shape": [2], "datatype": "FP64", "data": [1.0, 2.0]},
                        {"name": "city", "shape": [2], "datatype": "BYTES", "data": ["a", "b"]}]})]
    for path, body in frame_bodies:
        r = client.post(path, json=body)
        assert r.status_code == 422 and [p["field"] for p in r.json()["problems"]] == ["x1"], (path, r.text)


def test_exception_in_predict_is_500_with_an_error_id_and_the_details_only_in_the_log(fragile_client, caplog):
    caplog.set_level(logging.ERROR, logger="pyml_jupyter.serving")
    r = fragile_client.post("/invocations", json={"dataframe_records": [{"x1": 1e9, "x2": 0.0, "city": "nice"}]})
    assert r.status_code == 500
    body = r.json()
    assert body["error_code"] == "PREDICT_ERROR" and body["error_id"] in body["message"]
    assert "x1 is out of range" not in r.text and "RuntimeError" not in r.text  # the model's text stays private
    tagged = [line for line in caplog.text.splitlines() if f"[error_id={body['error_id']}]" in line]
    assert any("RuntimeError: x1 is out of range" in line for line in tagged)
    assert any("Traceback" in line for line in tagged)
    assert_still_serving(fragile_client)
    metrics = fragile_client.get("/metrics").text
    assert 'pyml_errors_total{route="/invocations",error_code="PREDICT_ERROR"} 1' in metrics


def test_unknown_route_and_wrong_method_are_json(client):
    r = client.get("/nope")
    assert r.status_code == 404 and r.json()["error_code"] == "NOT_FOUND"
    r = client.get("/invocations")
    assert r.status_code == 405 and r.json()["error_code"] == "METHOD_NOT_ALLOWED"
    assert_still_serving(client)


# ------------------------------------------------------------------------------------ configuration


def test_app_from_env_reads_the_pyml_variables(example_package, monkeypatch):
    monkeypatch.setenv("PYML_PACKAGE", str(example_package))
    monkeypatch.setenv("PYML_MODEL_NAME", "churn")
    monkeypatch.setenv("PYML_MODEL_VERSION", "7")
    monkeypatch.setenv("PYML_RUN_ID", "abc")
    monkeypatch.setenv("PYML_MAX_BODY_BYTES", "500")
    with TestClient(app_from_env()) as c:
        assert c.get("/metadata").json()["name"] == "churn"
        assert c.get("/v2/models/churn/versions/7/ready").status_code == 200
        assert c.post("/invocations", content=b" " * 501, headers=JSON).status_code == 413


def test_predictions_on_a_dedicated_thread(example_package, sample, expected):
    with TestClient(create_app(example_package, predict_thread=True)) as c:
        assert_scores(c.post("/invocations", json={"dataframe_split": split(sample)}).json()["predictions"],
                      expected)


# --------------------------------------------------------------------------- a real uvicorn server


HTTP_PARSERS = ["h11"] + (["httptools"] if importlib.util.find_spec("httptools") else [])


@pytest.mark.parametrize("parser", HTTP_PARSERS)
def test_multi_worker_server_answers_with_tcp_nodelay(example_package, sample, expected, parser):
    # The asyncio loop is where the trap is (uvloop sets TCP_NODELAY itself); it is what runs wherever uvloop is not installed.
    with serving(example_package, "--host", "127.0.0.1", "--workers", "2", "--http", parser, "--loop", "asyncio",
                 "--log-level", "warning") as server:
        port = server.port
        body = json.dumps({"dataframe_split": split(sample.iloc[:1])})
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        connection.request("POST", "/invocations", body=b"{oops", headers=JSON)  # a bad request first
        bad = connection.getresponse()
        assert bad.status == 400 and json.loads(bad.read())["error_code"] == "BAD_REQUEST"
        # Keep-alive requests on one connection: with Nagle's algorithm on (uvicorn's default when it binds
        # the socket for several workers) each one waits ~40 ms for the client's delayed ACK.
        durations = []
        for _ in range(20):
            started = time.perf_counter()
            connection.request("POST", "/invocations", body=body, headers=JSON)
            response = connection.getresponse()
            payload = json.loads(response.read())
            durations.append(time.perf_counter() - started)
            assert response.status == 200
        assert_scores(payload["predictions"], expected[:1])
        # The median, not the mean: Nagle's delay hits every request, a loaded machine only some of them.
        median = statistics.median(durations)
        assert median < 0.020, f"keep-alive requests take {median * 1000:.1f} ms (median): is TCP_NODELAY off?"
