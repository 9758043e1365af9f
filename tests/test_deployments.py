"""Deployments with a REAL Docker engine: run, predict, find again, stop (skipped without an engine, failed in CI)."""

from __future__ import annotations

import importlib
import json
import os
import time
import urllib.error
import urllib.request

import numpy as np
import pandas as pd
import pytest

from docker_fixtures import (  # noqa: F401
    BASE_IMAGE,
    built,
    copy_package,
    docker_engine,
    model_name,
    pyml_cache,
    session_package,
    write_tensor_package,
)
from pyml_jupyter.deployments import (
    Deployment,
    container_name,
    find_deployment,
    list_deployments,
    run_deployment,
    stop_deployment,
)
from pyml_jupyter.errors import DeployError, InvalidInput
from pyml_jupyter.images.builder import build_image
from pyml_jupyter.parity import compare
from pyml_jupyter.progress import Progress
from pyml_jupyter.serving.loader import load_package

pytestmark = pytest.mark.docker


@pytest.fixture(scope="module")
def deployment(built, docker_engine):
    _, info, _ = built
    progress = Progress("deploy")
    dep = run_deployment(info, name=model_name(), version=1, progress=progress, client=docker_engine)
    dep.progress = progress
    yield dep
    stop_deployment(model_name(), "1", client=docker_engine)


def post(url: str, body: bytes, content_type: str = "application/json") -> tuple[int, dict]:
    req = urllib.request.Request(url, data=body, method="POST", headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


# ------------------------------------------------------------------------------------------------ running


def test_deployment_runs_on_localhost_with_its_labels(deployment, docker_engine):
    assert deployment.status == "running"
    assert deployment.url.startswith("http://127.0.0.1:")
    assert deployment.name == model_name() and deployment.version == 1 and deployment.run_id == "run-1"
    container = docker_engine.containers.get(deployment.container_id)
    assert container.name == container_name(model_name(), "1") == f"pyml-{model_name()}-1"
    assert container.labels["pyml.managed"] == "true" and container.labels["pyml.digest"].startswith("sha256:")
    binding = container.attrs["NetworkSettings"]["Ports"]["8080/tcp"][0]
    assert binding["HostIp"] == "127.0.0.1"
    assert deployment.progress.stage == "running"


def test_predictions_from_the_container_equal_the_notebooks_exactly(deployment, built):
    package = built[0]
    model = load_package(package)
    sample = model.info.read_sample()
    expected = model.predict(sample)
    actual = deployment.predict(sample)
    pd.testing.assert_frame_equal(actual, expected, check_exact=True)


def test_predict_keeps_the_inputs_index(deployment, built):
    sample = load_package(built[0]).info.read_sample()
    sample.index = [f"row{i}" for i in range(len(sample))]
    assert list(deployment.predict(sample).index) == list(sample.index)


def test_parity_report_against_the_container_has_the_servers_phases(deployment, built):
    model = load_package(built[0])
    sample = model.info.read_sample()
    report = compare(model.predict(sample), deployment.predict(sample, timing=True), sample=sample)
    assert report.ok and report.max_abs_diff == 0.0
    assert report.latency["container_ms"] > 0
    assert {"parse_ms", "validate_ms", "predict_ms", "serialize_ms"} <= set(report.latency["server"])


def test_a_bad_request_answers_4xx_json_and_the_container_keeps_serving(deployment, built):
    status, body = post(deployment.url + "/invocations", b"{not json")
    assert status == 400 and body["error_code"] == "BAD_REQUEST"
    sample = load_package(built[0]).info.read_sample()
    with pytest.raises(InvalidInput) as info:  # the container's 422: the input's fault, with its problems
        deployment.predict(sample.drop(columns=["city"]))
    assert info.value.status == 422 and "city" in info.value.message
    assert [p["field"] for p in info.value.problems] == ["city"]
    assert deployment.ping()
    assert len(deployment.predict(sample)) == len(sample)
    assert docker_state(deployment) == "running"


def test_a_500_carries_only_an_error_id_and_the_client_shows_the_containers_log_for_it(deployment):
    # 1e400 reads as infinity, which the schema's float64 allows and scikit-learn refuses: the model raises
    body = b'{"dataframe_records": [{"x1": 1e400, "x2": 0.0, "city": "nice"}]}'
    with pytest.raises(DeployError) as raised:
        deployment._call("/invocations", body)
    error = raised.value
    answer = error.details["response"]
    assert error.details["status"] == 500 and answer["error_code"] == "PREDICT_ERROR"
    assert "ValueError" not in json.dumps(answer)  # the model's own message stays in the log
    assert "Traceback" in error.details["log"] and "ValueError" in error.details["log"]
    assert answer["error_id"] in error.message and "ValueError" in error.message
    assert deployment.error_log(answer["error_id"]) == error.details["log"]


def docker_state(dep: Deployment) -> str:
    return dep.refresh().status


def test_the_served_process_is_not_root(deployment, docker_engine):
    container = docker_engine.containers.get(deployment.container_id)
    code, out = container.exec_run(["id", "-u"])
    assert code == 0 and out.decode().strip() == "10001"
    assert container.attrs["Config"]["User"] == "10001:10001"


def test_logs_and_metadata(deployment):
    assert "Uvicorn running" in deployment.logs(tail=50) or "Application startup complete" in deployment.logs(50)
    meta = deployment.metadata()
    assert meta["name"] == model_name() and meta["version"] == "1" and meta["kind"] == "dataframe"


def test_json_form(deployment):
    data = json.loads(json.dumps(deployment.to_dict()))
    assert data["url"] == deployment.url and data["status"] == "running" and data["version"] == 1


def test_repr_and_html(deployment):
    text = repr(deployment)
    assert f"{model_name()}/1" in text and "running" in text and deployment.url in text
    page = deployment._repr_html_()
    assert deployment.url in page and "running" in page


# ------------------------------------------------------------------------------------------------ found again


def test_deployment_is_found_again_after_a_restart(deployment):
    import docker

    fresh = docker.from_env()  # as a new kernel would: no state but the engine's
    found = [d for d in list_deployments(client=fresh) if d.name == model_name()]
    assert [(d.version, d.container_id, d.url) for d in found] == [(1, deployment.container_id, deployment.url)]
    again = find_deployment(model_name(), "1", client=fresh)
    assert again is not None and again.container_id == deployment.container_id
    assert again.ping()


def test_running_the_same_version_again_returns_the_running_container(deployment, built, docker_engine):
    again = run_deployment(built[1], name=model_name(), version=1, client=docker_engine)
    assert again.container_id == deployment.container_id and again.url == deployment.url


def test_stop_removes_the_container(built, docker_engine):
    dep = run_deployment(built[1].tag, name=model_name(), version=77, client=docker_engine)
    assert find_deployment(model_name(), "77", client=docker_engine) is not None
    stopped = stop_deployment(model_name(), "77", client=docker_engine)
    assert [d.container_id for d in stopped] == [dep.container_id] and stopped[0].status == "removed"
    assert find_deployment(model_name(), "77", client=docker_engine, all=True) is None
    assert not docker_engine.containers.list(all=True, filters={"id": dep.container_id})
    assert stop_deployment(model_name(), "77", client=docker_engine) == []


# ------------------------------------------------------------------------------------------------ failures


def test_a_container_that_exits_raises_deploy_error_with_its_log(built, docker_engine, tmp_path):
    package = copy_package(built[0], tmp_path / "crashing")
    (package / "model.py").write_text((package / "model.py").read_text() +
                                      "\nraise RuntimeError('boom while importing the model')\n")
    name = model_name("crash")
    image = build_image(package, name=name, version=1, base_image=BASE_IMAGE, client=docker_engine)
    with pytest.raises(DeployError) as info:
        run_deployment(image, name=name, version=1, timeout=60, client=docker_engine)
    assert "boom while importing the model" in info.value.message
    assert "stopped (exit code" in info.value.message
    assert not docker_engine.containers.list(all=True, filters={"name": container_name(name, "1")})


def test_an_image_that_does_not_exist_is_not_found(docker_engine):
    from pyml_jupyter.errors import HINT_BUILD, NotFound

    with pytest.raises(NotFound, match="is not on this Docker engine") as info:
        run_deployment("pyml/pytest-no-such-image:1", name=model_name("missing"), version=1, client=docker_engine)
    assert info.value.hint == HINT_BUILD  # each face words "build it first" itself


# ------------------------------------------------------------------------------------------------ tensors


def test_tensor_model_predictions_round_trip_exactly(session_package, docker_engine, tmp_path):
    requirements = (session_package / "requirements.txt").read_text()  # same pins: the dependency layer is reused
    package = write_tensor_package(tmp_path / "tensor", requirements)
    name = model_name("tensor")
    image = build_image(package, name=name, version=1, base_image=BASE_IMAGE, client=docker_engine)
    dep = run_deployment(image, name=name, version=1, client=docker_engine)
    try:
        model = load_package(package)
        sample = model.info.read_sample()
        expected = model.predict(sample)
        actual = dep.predict(sample)
        assert set(actual) == {"y", "cls"}
        for key in expected:
            assert actual[key].dtype == expected[key].dtype
            np.testing.assert_array_equal(actual[key], expected[key])
        assert compare(expected, actual, sample=sample).ok
    finally:
        stop_deployment(name, client=docker_engine)


# ------------------------------------------------------------------------------------------------ gRPC, workers


def test_the_container_serves_grpc_on_its_published_target_like_http(deployment, built):
    tritonclient_grpc = importlib.import_module("tritonclient.grpc")  # a test dependency: missing is an error
    sample = load_package(built[0]).info.read_sample()
    assert deployment.grpc_target.startswith("127.0.0.1:")
    assert deployment.to_dict()["grpc_target"] == deployment.grpc_target
    client = tritonclient_grpc.InferenceServerClient(deployment.grpc_target)
    assert client.is_server_live() and client.is_model_ready(model_name(), "1")
    inputs = []
    for column in sample.columns:
        values = sample[column].to_numpy()
        datatype = "BYTES" if values.dtype == object else "FP64"
        tensor = tritonclient_grpc.InferInput(column, [len(sample)], datatype)
        tensor.set_data_from_numpy(values.astype(object if datatype == "BYTES" else np.float64))
        inputs.append(tensor)
    result = client.infer(model_name(), inputs)

    expected = deployment.predict(sample)
    for column in expected.columns:
        assert result.as_numpy(column).tolist() == expected[column].tolist()


def test_the_containers_workers_follow_the_cpus_its_cgroup_allows(built, docker_engine):
    _, info, _ = built
    script = ["-c", "from pyml_jupyter.serving.server import available_cpus; print(available_cpus())"]
    one = docker_engine.containers.run(info.tag, script, entrypoint=["python"], remove=True, nano_cpus=10**9)
    whole = docker_engine.containers.run(info.tag, script, entrypoint=["python"], remove=True)
    assert one.decode().strip() == "1"
    assert int(whole.decode().strip()) == len(os.sched_getaffinity(0))


def test_deploy_sets_the_worker_count(built, docker_engine):
    _, info, _ = built
    name = model_name("workers")
    dep = run_deployment(info, name=name, version=1, workers=3, client=docker_engine)
    try:
        container = docker_engine.containers.get(dep.container_id)
        env = dict(item.split("=", 1) for item in container.attrs["Config"]["Env"])
        assert env["PYML_WORKERS"] == "3"
        deadline = time.monotonic() + 30
        while container.logs().decode().count("Started server process") < 3:
            assert time.monotonic() < deadline, container.logs().decode()
            time.sleep(0.2)
    finally:
        stop_deployment(name, "1", client=docker_engine)


# ------------------------------------------------------------------------------------ identity and races


def test_stopping_a_name_never_stops_another_that_differs_in_case(built, docker_engine):
    name = model_name("case")
    dep = run_deployment(built[1], name=name, version="1", client=docker_engine)
    try:
        assert stop_deployment(name.upper(), client=docker_engine) == []
        assert stop_deployment(name.upper(), "1", client=docker_engine) == []
        assert dep.refresh().status == "running"
    finally:
        stop_deployment(name, client=docker_engine)


def test_two_concurrent_deploys_of_a_version_share_one_container_and_remove_none(built, docker_engine):
    from concurrent.futures import ThreadPoolExecutor

    name = model_name("race")
    started = int(time.time()) - 1
    try:
        with ThreadPoolExecutor(4) as pool:
            deps = list(pool.map(lambda _: run_deployment(built[1], name=name, version="1", client=docker_engine),
                                 range(4)))
        assert len({d.container_id for d in deps}) == 1
        assert all(d.ping() for d in deps)
        removed = [e for e in docker_engine.events(since=started, until=int(time.time()) + 1, decode=True,
                                                   filters={"type": "container", "event": "destroy"})
                   if e["Actor"]["Attributes"].get("name") == container_name(name, "1")]
        assert removed == []
    finally:
        stop_deployment(name, client=docker_engine)


def test_a_container_of_that_name_not_started_by_pyml_is_never_removed(built, docker_engine):
    name = model_name("foreign")
    foreign = docker_engine.containers.run(BASE_IMAGE, ["sleep", "120"], name=container_name(name, "1"),
                                           detach=True, labels={"pyml.model": name})
    try:
        with pytest.raises(DeployError, match="not started by pyml_jupyter"):
            run_deployment(built[1], name=name, version="1", client=docker_engine)
        foreign.reload()
        assert foreign.status == "running"
    finally:
        foreign.remove(force=True)


def test_local_traffic_bypasses_a_proxy_set_without_no_proxy(built, docker_engine, monkeypatch):
    import socket

    with socket.socket() as s:  # a port nothing listens on: any request through the "proxy" fails
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.setenv(var, f"http://127.0.0.1:{closed}")
    for var in ("no_proxy", "NO_PROXY"):
        monkeypatch.delenv(var, raising=False)
    name = model_name("proxied")
    package, info, _ = built
    try:
        dep = run_deployment(info, name=name, version="1", timeout=60, client=docker_engine)  # readiness pings
        sample = load_package(package).info.read_sample()
        assert dep.ping()
        assert len(dep.predict(sample)) == len(sample)  # test predictions
    finally:
        stop_deployment(name, client=docker_engine)
