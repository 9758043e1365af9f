"""What one request may cost: rows, columns, nesting and body limits (400/413 naming the setting), a parser that
builds only the schema's columns, zero rows answered without the model, and non-finite floats written as
MLflow writes them. In-process with Starlette's TestClient; the gRPC limits against a real server."""

from __future__ import annotations

import io
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from starlette.testclient import TestClient

from pyml_jupyter.serving.app import create_app
from pyml_jupyter.serving.jsonio import dumps, loads, nesting_depth
from pyml_jupyter.serving.limits import Limits
from pyml_jupyter.serving.loader import load_package
from pyml_jupyter.serving.schema import DataFrameSchema, dataframe_from_json

from conftest import write_example_package
from test_serving_app import write_tensor_package

LIMITS = Limits(max_rows=5, max_columns=8, max_depth=6)
ROW = {"x1": 0.5, "x2": -1.0, "city": "nice"}


@pytest.fixture
def limited(example_package: Path):
    with TestClient(create_app(example_package, model_name="example", limits=LIMITS)) as c:
        yield c


@pytest.fixture
def limited_tensor(tmp_path: Path):
    with TestClient(create_app(write_tensor_package(tmp_path / "tensor"), model_name="doubler",
                               limits=LIMITS)) as c:
        yield c


def assert_refused(r, status: int, setting: str) -> None:
    assert r.status_code == status, r.text
    body = r.json()
    assert setting in body["message"] and body["limit"] == setting


# ------------------------------------------------------------------------------------------- rows


@pytest.mark.parametrize("payload", [
    {"dataframe_records": [ROW] * 6},
    {"dataframe_split": {"columns": list(ROW), "data": [list(ROW.values())] * 6}},
    {"inputs": {k: [v] * 6 for k, v in ROW.items()}},
    {"instances": [ROW] * 6},
], ids=["records", "split", "columns", "instances"])
def test_more_rows_than_pyml_max_rows_is_413_naming_the_setting(limited, payload):
    assert_refused(limited.post("/invocations", json=payload), 413, "PYML_MAX_ROWS")
    ok = limited.post("/invocations", json={"dataframe_records": [ROW] * 5})
    assert ok.status_code == 200 and len(ok.json()["predictions"]) == 5


def test_csv_rows_beyond_the_limit_are_413_and_not_read_further(limited):
    body = "x1,x2,city\n" + "0.5,-1.0,nice\n" * 1000
    r = limited.post("/invocations", content=body, headers={"Content-Type": "text/csv"})
    assert_refused(r, 413, "PYML_MAX_ROWS")


def test_v2_and_tensor_rows_beyond_the_limit_are_413(limited, limited_tensor):
    inputs = [{"name": "x1", "shape": [6], "datatype": "FP64", "data": [0.5] * 6},
              {"name": "x2", "shape": [6], "datatype": "FP64", "data": [0.5] * 6},
              {"name": "city", "shape": [6], "datatype": "BYTES", "data": ["nice"] * 6}]
    assert_refused(limited.post("/v2/models/example/infer", json={"inputs": inputs}), 413, "PYML_MAX_ROWS")
    assert_refused(limited_tensor.post("/invocations", json={"inputs": {"x": [[1, 2, 3]] * 6}}), 413,
                   "PYML_MAX_ROWS")
    assert_refused(limited_tensor.post("/invocations", json={"instances": [[1, 2, 3]] * 6}), 413, "PYML_MAX_ROWS")


# ---------------------------------------------------------------------------------------- columns


def test_a_record_with_more_keys_than_pyml_max_columns_is_400(limited):
    wide = {**ROW, **{f"extra{i}": i for i in range(20)}}
    assert_refused(limited.post("/invocations", json={"dataframe_records": [wide]}), 400, "PYML_MAX_COLUMNS")


def test_csv_split_and_v2_wider_than_the_limit_are_400(limited):
    names = list(ROW) + [f"c{i}" for i in range(10)]
    csv = ",".join(names) + "\n" + ",".join(["0.5", "1", "nice"] + ["0"] * 10) + "\n"
    r = limited.post("/invocations", content=csv, headers={"Content-Type": "text/csv"})
    assert_refused(r, 400, "PYML_MAX_COLUMNS")
    split = {"columns": names, "data": [[0.5, 1.0, "nice"] + [0] * 10]}
    assert_refused(limited.post("/invocations", json={"dataframe_split": split}), 400, "PYML_MAX_COLUMNS")
    inputs = [{"name": n, "shape": [1], "datatype": "FP64", "data": [0.0]} for n in names]
    assert_refused(limited.post("/v2/models/example/infer", json={"inputs": inputs}), 400, "PYML_MAX_COLUMNS")


def test_the_column_limit_never_refuses_the_models_own_columns(example_package):
    with TestClient(create_app(example_package, limits=Limits(max_columns=1))) as c:
        r = c.post("/invocations", json={"dataframe_records": [ROW]})
        assert r.status_code == 200, r.text
        assert_refused(c.post("/invocations", json={"dataframe_records": [{**ROW, "more": 1}]}), 400,
                       "PYML_MAX_COLUMNS")


def test_unknown_keys_within_the_limit_are_ignored_and_never_gathered(client_default):
    records = [{**ROW, f"unique{i}": i} for i in range(200)]  # every record brings a key of its own
    r = client_default.post("/invocations", json={"dataframe_records": records})
    assert r.status_code == 200 and len(r.json()["predictions"]) == 200
    schema = DataFrameSchema({"x1": "float64", "x2": "float64", "city": "string"})
    frame = dataframe_from_json(records, schema)
    assert list(frame.columns) == ["x1", "x2", "city"] and len(frame) == 200


def test_a_nullable_column_may_be_omitted_in_every_json_form():
    schema = DataFrameSchema({"a": "int64", "b": "string?"})
    for payload in ([{"a": 1}, {"a": 2}], {"columns": ["a"], "data": [[1], [2]]}, {"a": [1, 2]}):
        frame = dataframe_from_json(payload, schema)
        assert list(frame.columns) == ["a", "b"] and frame["b"].isna().all() and list(frame["a"]) == [1, 2]
    with pytest.raises(Exception, match="missing column 'a'"):
        dataframe_from_json([{"b": "x"}], schema)


@pytest.fixture
def client_default(example_package: Path):
    with TestClient(create_app(example_package, model_name="example")) as c:
        yield c


# ---------------------------------------------------------------------------------------- nesting


def test_json_nested_deeper_than_pyml_max_depth_is_400_before_parsing(limited):
    deep = b'{"dataframe_records": [{"x1": 1, "x2": 2, "city": ' + b"[" * 40 + b"]" * 40 + b"}]}"
    assert_refused(limited.post("/invocations", content=deep, headers={"Content-Type": "application/json"}),
                   400, "PYML_MAX_DEPTH")
    v2 = b'{"inputs": [{"name": "x1", "shape": [1], "datatype": "FP64", "data": ' + b"[" * 40 + b"1" + b"]" * 40 + b"}]}"
    assert_refused(limited.post("/v2/models/example/infer", content=v2), 400, "PYML_MAX_DEPTH")


def test_brackets_inside_strings_do_not_count_as_nesting(limited):
    r = limited.post("/invocations", json={"dataframe_records": [{**ROW, "city": "[[[[[[[[{{{{{{\\\"[["}]})
    assert r.status_code == 200, r.text


def test_nesting_depth_is_exact_for_json_with_escapes_and_brackets_in_strings():
    for value, depth in [([], 1), ({"a": [1, {"b": "]]]"}]}, 3), ("[[[", 0), ([['\\"[', ["\\"]]], 3),
                         ({"k[\\\"{": [[[]]]}, 4)]:
        assert nesting_depth(json.dumps(value).encode()) == depth, value


# --------------------------------------------------------------------------------- bodies and text


def test_a_body_over_pyml_max_body_bytes_is_413_naming_the_setting(example_package):
    with TestClient(create_app(example_package, limits=Limits(max_body_bytes=200))) as c:
        assert_refused(c.post("/invocations", json={"dataframe_records": [ROW] * 10}), 413, "PYML_MAX_BODY_BYTES")


@pytest.mark.parametrize("body", [
    b'{"dataframe_records": [{"x1": "\xff\xfe", "x2": 1, "city": "a"}]}',  # invalid UTF-8
    b'{"dataframe_records": [{"x1": ' + b"9" * 5000 + b', "x2": 1, "city": "a"}]}',  # beyond int conversion
    b"",
], ids=["invalid-utf8", "huge-integer", "empty"])
def test_unreadable_json_is_400(limited, body):
    r = limited.post("/invocations", content=body, headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and r.json()["error_code"] == "BAD_REQUEST", r.text


def test_invalid_utf8_and_empty_csv_are_400(limited):
    for body in (b"x1,x2,city\n\xff,1,a\n", b""):
        r = limited.post("/invocations", content=body, headers={"Content-Type": "text/csv"})
        assert r.status_code == 400 and r.json()["error_code"] == "BAD_REQUEST", r.text


def test_a_csv_header_ended_by_a_carriage_return_or_holding_a_nul_is_counted_not_a_parser_crash(limited):
    r = limited.post("/invocations", content=b"x1,x2,city\r0.5,1,nice\r", headers={"Content-Type": "text/csv"})
    assert r.status_code == 200, r.text
    for body in (b"x1,x\r2,city\n0.5,1,nice\n", b"x1,x2\x00,city\n0.5,1,nice\n"):  # as pandas reads them
        r = limited.post("/invocations", content=body, headers={"Content-Type": "text/csv"})
        assert r.status_code < 500 and "server log" not in r.text, r.text  # not the unexpected-failure answer


# ---------------------------------------------------------------------------------------- settings


def test_limits_come_from_the_environment_and_bad_values_name_the_setting():
    limits = Limits.from_env({"PYML_MAX_ROWS": "7", "PYML_MAX_COLUMNS": "", "PYML_MAX_DEPTH": "9"})
    assert (limits.max_rows, limits.max_columns, limits.max_depth) == (7, Limits().max_columns, 9)
    with pytest.raises(ValueError, match="PYML_MAX_ROWS"):
        Limits.from_env({"PYML_MAX_ROWS": "many"})
    with pytest.raises(ValueError, match="PYML_MAX_DEPTH"):
        Limits.from_env({"PYML_MAX_DEPTH": "0"})


def test_app_from_env_applies_the_limits(example_package, monkeypatch):
    from pyml_jupyter.serving.app import app_from_env

    monkeypatch.setenv("PYML_PACKAGE", str(example_package))
    monkeypatch.setenv("PYML_MAX_ROWS", "2")
    with TestClient(app_from_env()) as c:
        assert_refused(c.post("/invocations", json={"dataframe_records": [ROW] * 3}), 413, "PYML_MAX_ROWS")


# --------------------------------------------------------------------------------------- zero rows


def test_zero_rows_get_zero_rows_back_although_scikit_learn_refuses_empty_input(client_default, example_package):
    with pytest.raises(ValueError):  # the model itself cannot predict zero rows
        load_package(example_package).predict(pd.DataFrame({"x1": [], "x2": [], "city": []}).astype(
            {"x1": float, "x2": float, "city": object}))
    for payload in ({"inputs": {"x1": [], "x2": [], "city": []}}, {"dataframe_records": []},
                    {"dataframe_split": {"columns": ["x1", "x2", "city"], "data": []}}):
        r = client_default.post("/invocations", json=payload)
        assert r.status_code == 200 and r.json() == {"predictions": []}, (payload, r.text)
    csv = client_default.post("/invocations", content="x1,x2,city\n", headers={"Content-Type": "text/csv"})
    assert csv.status_code == 200 and csv.json() == {"predictions": []}


def test_zero_rows_over_v2_answer_the_output_schema_with_shape_zero(client_default):
    inputs = [{"name": "x1", "shape": [0], "datatype": "FP64", "data": []},
              {"name": "x2", "shape": [0], "datatype": "FP64", "data": []},
              {"name": "city", "shape": [0], "datatype": "BYTES", "data": []}]
    r = client_default.post("/v2/models/example/infer", json={"inputs": inputs})
    assert r.status_code == 200, r.text
    outputs = {o["name"]: o for o in r.json()["outputs"]}
    assert outputs["score"] == {"name": "score", "datatype": "FP64", "shape": [0], "data": []}
    assert outputs["label"]["datatype"] == "INT64" and outputs["label"]["shape"] == [0]


def test_zero_rows_of_a_tensor_model_answer_empty_arrays_of_the_declared_shapes(tmp_path):
    with TestClient(create_app(write_tensor_package(tmp_path / "t"))) as c:
        for payload in ({"inputs": {"x": []}}, {"inputs": []}, {"instances": []}):  # [] is zero rows of (n, 3)
            r = c.post("/invocations", json=payload)
            assert r.status_code == 200 and r.json() == {"predictions": {"y": [], "total": []}}, (payload, r.text)
        inputs = [{"name": "x", "shape": [0, 3], "datatype": "FP32", "data": []}]
        r = c.post("/v2/models/Doubler/infer", json={"inputs": inputs})
        assert r.status_code == 200, r.text
        shapes = {o["name"]: o["shape"] for o in r.json()["outputs"]}
        assert shapes == {"y": [0, 3], "total": [0]}


# ----------------------------------------------------------------------------------- non-finite


def write_nonfinite_package(directory: Path) -> Path:
    """The example package, whose score is NaN, +inf and -inf for x1 = 1, 2, 3."""
    package = write_example_package(directory)
    source = (package / "model.py").read_text()
    marker = "    def predict(self, df):\n"
    assert marker in source
    source = source.replace(marker, marker + "        out = self._predict(df)\n"
                            "        out['score'] = out['score'].where(~df['x1'].eq(1.0).to_numpy(), float('nan'))\n"
                            "        out['score'] = out['score'].where(~df['x1'].eq(2.0).to_numpy(), float('inf'))\n"
                            "        out['score'] = out['score'].where(~df['x1'].eq(3.0).to_numpy(), -float('inf'))\n"
                            "        return out\n\n    def _predict(self, df):\n")
    (package / "model.py").write_text(source)
    contract = json.loads((package / "pyml.json").read_text())
    for column in contract["output_schema"]["columns"]:
        if column["name"] == "score":
            column["nullable"] = True
    (package / "pyml.json").write_text(json.dumps(contract))
    return package


NONFINITE_ROWS = [{"x1": 1.0, "x2": 0.0, "city": "nice"}, {"x1": 2.0, "x2": 0.0, "city": "nice"},
                  {"x1": 3.0, "x2": 0.0, "city": "nice"}]


def test_nan_and_infinities_are_written_as_mlflow_writes_them(tmp_path):
    from mlflow.pyfunc.scoring_server import predictions_to_json

    package = write_nonfinite_package(tmp_path / "nonfinite")
    frame = pd.DataFrame(NONFINITE_ROWS)
    theirs = io.StringIO()
    predictions_to_json(load_package(package).predict(frame), theirs)
    with TestClient(create_app(package, model_name="nonfinite")) as c:
        r = c.post("/invocations", json={"dataframe_records": NONFINITE_ROWS})
        assert r.status_code == 200, r.text
        assert b"NaN" in r.content and b"-Infinity" in r.content
        ours, expected = json.loads(r.content), json.loads(theirs.getvalue())
        assert [p["label"] for p in ours["predictions"]] == [p["label"] for p in expected["predictions"]]
        scores = [p["score"] for p in ours["predictions"]]
        assert math.isnan(scores[0]) and scores[1:] == [math.inf, -math.inf]
        assert [p["score"] for p in expected["predictions"]][1:] == [math.inf, -math.inf]
        v2 = c.post("/v2/models/nonfinite/infer", json={"inputs": [
            {"name": "x1", "shape": [3], "datatype": "FP64", "data": [1.0, 2.0, 3.0]},
            {"name": "x2", "shape": [3], "datatype": "FP64", "data": [0.0] * 3},
            {"name": "city", "shape": [3], "datatype": "BYTES", "data": ["nice"] * 3}]})
        assert v2.status_code == 200 and b"Infinity" in v2.content


def test_the_json_writer_is_the_same_whatever_is_installed():
    assert dumps({"a": [float("nan"), float("inf"), -float("inf"), None]}) == b'{"a":[NaN,Infinity,-Infinity,null]}'
    assert math.isnan(loads(b"[NaN]")[0])
    assert np.isinf(loads(b"[1e400]")[0])


# ------------------------------------------------------------------------------------------- gRPC


def test_grpc_applies_the_same_limits(example_package, tmp_path, monkeypatch):
    from tritonclient.utils import InferenceServerException

    from conftest import example_frame
    from test_serving_grpc import frame_inputs, serve

    monkeypatch.setenv("PYML_MAX_ROWS", "3")
    monkeypatch.setenv("PYML_MAX_BODY_BYTES", "20000")
    served = serve(example_package, tmp_path, "example")
    server = next(served)
    try:
        with pytest.raises(InferenceServerException, match="PYML_MAX_ROWS") as refused:
            server.client().infer("example", frame_inputs(example_frame(4)))
        assert refused.value.status() == "StatusCode.RESOURCE_EXHAUSTED"
        big = example_frame(1)
        big["city"] = "x" * 30_000
        with pytest.raises(InferenceServerException) as too_large:
            server.client().infer("example", frame_inputs(big))
        assert too_large.value.status() == "StatusCode.RESOURCE_EXHAUSTED"
        assert server.client().infer("example", frame_inputs(example_frame(3))).as_numpy("label").shape == (3,)
    finally:
        served.close()


def save_pyfunc(package: Path, out: Path) -> Path:
    """The package as an MLflow pyfunc model, the way pyml_jupyter.tracking logs it (no tracking store)."""
    import shutil

    import mlflow.pyfunc

    import pyml_jupyter.serving

    code = out.parent / "code" / "pyml_jupyter"
    shutil.copytree(Path(pyml_jupyter.serving.__file__).parent, code / "serving",
                    ignore=shutil.ignore_patterns("__pycache__"))
    mlflow.pyfunc.save_model(str(out), loader_module="pyml_jupyter.serving.pyfunc", data_path=str(package),
                             code_paths=[str(code)])
    return out


def test_nan_and_infinities_answer_like_a_real_mlflow_models_serve(tmp_path):
    import http.client
    import os
    import subprocess
    import sys

    from processes import free_port, wait_ready

    package = write_nonfinite_package(tmp_path / "nonfinite")
    model = save_pyfunc(package, tmp_path / "mlflow_model" / "model")
    port = free_port()
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    process = subprocess.Popen([sys.executable, "-m", "mlflow", "models", "serve", "-m", str(model), "--env-manager",
                                "local", "--port", str(port), "--host", "127.0.0.1"], stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, env=env, start_new_session=True)
    body = json.dumps({"dataframe_records": NONFINITE_ROWS})
    try:
        wait_ready(port, process, timeout=120)
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        connection.request("POST", "/invocations", body=body, headers={"Content-Type": "application/json"})
        response = connection.getresponse()
        theirs = response.read()
        assert response.status == 200, theirs
    finally:
        os.killpg(process.pid, 15)
        process.wait(timeout=30)
    with TestClient(create_app(package)) as c:
        ours = c.post("/invocations", content=body, headers={"Content-Type": "application/json"}).content
    for token in (b"NaN", b"Infinity", b"-Infinity"):
        assert token in theirs and token in ours
    mine, peer = json.loads(ours)["predictions"], json.loads(theirs)["predictions"]
    assert [p["label"] for p in mine] == [p["label"] for p in peer]
    same = [(a["score"] == b["score"]) or (math.isnan(a["score"]) and math.isnan(b["score"]))
            for a, b in zip(mine, peer)]
    assert all(same) and len(mine) == len(peer) == 3
