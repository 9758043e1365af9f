"""The /pyml/ REST handlers in a real jupyter_server, against a real MLflow store (and Docker for deploys)."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from http.cookies import SimpleCookie

import pandas as pd
import pytest
from tornado.httpclient import HTTPClientError

from pyml_jupyter import api
from pyml_jupyter.serving.contract import DataFrameModel

from conftest import IN_CI



class Doubler(DataFrameModel):
    """y = 2x + 1: small enough to build and serve in a test."""

    def predict(self, df):
        return pd.DataFrame({"y": df["x"] * 2.0 + 1.0}, index=df.index)


class Breaker(DataFrameModel):
    """Raises, naming its process, when PYML_TEST_BREAK_MODEL is set: a model's own fault, found where it runs."""

    def predict(self, df):
        import os

        if os.environ.get("PYML_TEST_BREAK_MODEL"):
            raise ValueError(f"broke in process {os.getpid()}")
        return pd.DataFrame({"y": df["x"]}, index=df.index)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A fresh sqlite MLflow store (artifacts and package cache beside it) with one registered model."""
    root = tmp_path_factory.mktemp("mlflow")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'mlflow.db'}")
        mp.setenv("PYML_CACHE_DIR", str(root / "cache"))
        mp.delenv("PYML_MLFLOW_UI", raising=False)
        name = f"doubler_{uuid.uuid4().hex[:8]}"
        api.register(Doubler, name, pd.DataFrame({"x": [1.0, 2.0, 3.5]}))
        breaker = f"breaker_{uuid.uuid4().hex[:8]}"
        api.register(Breaker, breaker, pd.DataFrame({"x": [1.0, 2.0]}))
        yield {"root": root, "name": name, "breaker": breaker}
        _remove_images(name)


def _remove_images(name: str) -> None:
    """Remove the images this module built (each test run registers a new model name)."""
    if not docker_available():
        return
    from pyml_jupyter.images.builder import remove_image

    try:
        remove_image(name, 1, force=True)
    except Exception:  # noqa: BLE001 - nothing built (the deploy test did not run)
        pass


@pytest.fixture
def jp_server_config(jp_server_config):
    return {"ServerApp": {"jpserver_extensions": {"pyml_jupyter": True}}}


@pytest.fixture
def fetch_json(jp_fetch):
    """jp_fetch (token-authenticated), answering (status, JSON body) also for error statuses."""

    async def fetch(*parts, method="GET", body=None, **kwargs):
        if body is not None and not isinstance(body, (str, bytes)):
            body = json.dumps(body)
        try:
            response = await jp_fetch("pyml", *parts, method=method, body=body, **kwargs)
        except HTTPClientError as e:
            response = e.response
        return response.code, json.loads(response.body or b"null")

    return fetch


@pytest.fixture
def raw_fetch(jp_serverapp, http_server_client, jp_base_url):
    """A request with nothing added: no token, no cookie, no XSRF header unless given."""

    def fetch(path, method="GET", body=None, headers=None):
        if method in ("POST", "PUT") and body is None:
            body = "{}"
        return http_server_client.fetch(
            jp_base_url + path, method=method, body=body, headers=headers or {}, raise_error=False
        )

    return fetch


def docker_available() -> bool:
    try:
        import docker

        docker.from_env().ping()
        return True
    except Exception:  # noqa: BLE001 - any failure means no usable engine
        return False


@pytest.fixture
def needs_docker():
    if not docker_available():
        if IN_CI:
            pytest.fail("Docker engine not reachable, and CI=true: the deploy flow must run in CI")
        pytest.skip("Docker engine not reachable")


# ------------------------------------------------------------------------------------------------- plumbing


async def test_models_lists_the_registered_versions(store, fetch_json):
    status, body = await fetch_json("models")
    assert status == 200
    (model,) = [m for m in body["models"] if m["name"] == store["name"]]
    assert model["latest_version"] == 1
    (version,) = model["versions"]
    assert version["version"] == 1
    assert version["contract_status"] == "passed"
    assert version["uri"] == f"models:/{store['name']}/1"
    assert model["mlflow_ui_url"] is None  # a sqlite store has no UI to link to


async def test_config_names_the_store_without_secrets(store, fetch_json):
    status, body = await fetch_json("config")
    assert status == 200
    assert body["tracking_uri"].startswith("sqlite:///")
    assert body["mlflow_ui_url"] is None
    assert body["version"]


ROUTES = [
    ("GET", "pyml/models"),
    ("GET", "pyml/config"),
    ("POST", "pyml/builds"),
    ("POST", "pyml/deployments"),
    ("GET", "pyml/deployments"),
    ("DELETE", "pyml/deployments/some_model"),
    ("DELETE", "pyml/deployments/some_model/1"),
    ("GET", "pyml/deployments/some_model/1/logs"),
    ("GET", "pyml/jobs"),
    ("GET", "pyml/jobs/0123abcd"),
    ("POST", "pyml/tests"),
]


@pytest.mark.parametrize(("method", "path"), ROUTES)
async def test_a_request_without_credentials_is_refused(raw_fetch, method, path):
    response = await raw_fetch(path, method=method)
    assert response.code in (401, 403)


async def _login_cookie(jp_fetch) -> str:
    """The login cookie the server sets for a token-authenticated request: what a browser holds."""
    response = await jp_fetch("pyml", "config")
    jar = SimpleCookie()
    for header in response.headers.get_list("Set-Cookie"):
        jar.load(header)
    login = [f"{k}={v.value}" for k, v in jar.items() if k.startswith("username-")]
    assert login, "the server set no login cookie"
    return login[0]


@pytest.mark.parametrize(("method", "path"), [r for r in ROUTES if r[0] != "GET"])
async def test_a_cookie_authenticated_write_without_xsrf_token_is_refused(jp_fetch, raw_fetch, method, path):
    cookie = await _login_cookie(jp_fetch)
    response = await raw_fetch(path, method=method, headers={"Cookie": cookie})
    assert response.code == 403
    assert "xsrf" in response.body.decode().lower()


async def test_a_cookie_authenticated_write_with_the_xsrf_token_gets_through(jp_fetch, raw_fetch):
    cookie = await _login_cookie(jp_fetch)
    headers = {"Cookie": f"{cookie}; _xsrf=abc123", "X-XSRFToken": "abc123"}
    response = await raw_fetch("pyml/tests", method="POST", body=json.dumps({"ref": "../x"}), headers=headers)
    assert response.code == 400  # past authentication and XSRF, stopped by name validation
    assert json.loads(response.body)["error"] == "invalid_name"


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "builds", {"ref": "../../etc/passwd"}),
        ("POST", "deployments", {"ref": "name with spaces"}),
        ("POST", "deployments", {"ref": "model/not-a-version"}),
        ("POST", "deployments", {"ref": "-rm"}),
        ("POST", "tests", {"ref": "a;b"}),
        ("DELETE", "deployments/..", None),
        ("DELETE", "deployments/ok_name/x1", None),
        ("DELETE", "deployments/%24%28id%29", None),
    ],
)
async def test_bad_names_are_rejected_before_reaching_mlflow_or_docker(fetch_json, method, path, body):
    status, payload = await fetch_json(*path.split("/"), method=method, body=body)
    assert status == 400
    assert payload["error"] == "invalid_name"
    assert payload["message"]


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("deployments", {}),
        ("deployments", {"ref": 3}),
        ("deployments", {"ref": "m/1", "port": "8080"}),
        ("deployments", {"ref": "m/1", "port": 70000}),
        ("builds", ["m/1"]),
        ("builds", {"ref": "m/1", "base_image": 3}),
        ("tests", {"model": "m/1"}),
    ],
)
async def test_malformed_bodies_are_a_400_with_a_message(fetch_json, path, body):
    status, payload = await fetch_json(path, method="POST", body=body)
    assert status == 400
    assert payload["error"] == "bad_request"
    assert payload["message"]


@pytest.mark.parametrize(
    ("field", "value"),
    [("memory", "lots"), ("pids_limit", "many"), ("allowed_hosts", ["bad host"]), ("token", "short"), ("workers", 0),
     ("workers", "two")],
)
async def test_bad_container_limits_are_a_400_naming_the_field_before_any_job(fetch_json, field, value):
    status, payload = await fetch_json("deployments", method="POST", body={"ref": "m/1", field: value})
    assert status == 400 and field in payload["message"]
    _, jobs = await fetch_json("jobs")
    assert not any(job["ref"] == "m/1" for job in jobs["jobs"])


async def test_a_body_that_is_not_json_is_a_400(fetch_json):
    status, payload = await fetch_json("deployments", method="POST", body="{not json")
    assert status == 400
    assert payload["error"] == "http_400"


async def test_an_unknown_job_is_a_404(fetch_json):
    status, payload = await fetch_json("jobs", "0123abcd")
    assert status == 404
    assert payload["error"] == "not_found"


@pytest.mark.parametrize("path", ["deployments", "builds"])
@pytest.mark.parametrize("ref", ["no_such_model_xyz/1", "no_such_model_xyz", "no_such_model_xyz@champion"])
async def test_building_or_deploying_an_unknown_model_is_a_404_before_any_job(store, fetch_json, path, ref):
    status, payload = await fetch_json(path, method="POST", body={"ref": ref})
    assert status == 404
    assert payload["error"] == "not_found"
    _, body = await fetch_json("jobs")
    assert not any(job["ref"].startswith("no_such_model_xyz") for job in body["jobs"])


async def test_testing_an_unknown_model_is_a_404(store, fetch_json):
    status, payload = await fetch_json("tests", method="POST", body={"ref": "no_such_model_xyz/1"})
    assert status == 404
    assert payload["error"] == "not_found"
    assert payload["message"].endswith("Register it from a notebook with %pyml_register, then refresh the panel.")


async def test_a_sample_that_does_not_match_the_schema_fails_the_test_job_with_422_and_the_problems(store, fetch_json):
    name = f"doubler_{uuid.uuid4().hex[:8]}"
    api.register(Doubler, name, pd.DataFrame({"x": [1.0, 2.0]}))
    sample = api.package_path(name) / "sample.json"  # the stored sample, edited by hand into the wrong shape
    sample.write_text(json.dumps({"columns": ["z"], "data": [[1.0]]}))

    status, job = await fetch_json("tests", method="POST", body={"ref": name, "target": "container"})
    assert status == 202
    job = await _poll(fetch_json, job["id"], timeout=120)

    assert job["state"] == "failed"
    error = job["error"]
    assert error["error"] == "invalid_input" and error["status"] == 422
    assert "'x'" in error["message"]
    assert [p["field"] for p in error["details"]["problems"]] == ["x"]


async def test_a_test_runs_as_a_job_in_a_child_process_and_a_failing_model_is_a_422(store, fetch_json,
                                                                                    monkeypatch):
    import os

    monkeypatch.setenv("PYML_TEST_BREAK_MODEL", "1")
    status, job = await fetch_json("tests", method="POST", body={"ref": store["breaker"], "target": "all"})
    assert status == 202 and job["kind"] == "test" and job["ref"] == f"{store['breaker']}/1"
    job = await _poll(fetch_json, job["id"], timeout=120)
    assert job["state"] == "failed"
    assert job["error"]["error"] == "model_failed" and job["error"]["status"] == 422
    assert "broke in process" in job["error"]["message"]
    assert f"broke in process {os.getpid()}" not in job["error"]["message"]  # not in the Jupyter server


async def test_a_test_of_an_unknown_target_is_a_400_naming_the_field(store, fetch_json):
    status, payload = await fetch_json("tests", method="POST", body={"ref": store["name"], "target": "gpu"})
    assert status == 400 and "target" in payload["message"]


async def test_logs_of_a_version_without_a_container_is_a_404_and_a_bad_tail_a_400(store, fetch_json):
    status, payload = await fetch_json("deployments", store["name"], "1", "logs", params={"tail": "many"})
    assert status == 400 and "tail" in payload["message"]
    if docker_available():
        status, payload = await fetch_json("deployments", store["breaker"], "1", "logs")
        assert status == 404 and "deploy it first" in payload["message"]


async def test_jobs_lists_the_jobs_newest_first(jp_serverapp, fetch_json):
    manager = jp_serverapp.web_app.settings["pyml_jobs"]
    first = manager.submit("build", "m/1", lambda progress: None).wait(10)
    second = manager.submit("build", "m/2", lambda progress: None).wait(10)
    status, body = await fetch_json("jobs")
    assert status == 200
    ids = [job["id"] for job in body["jobs"]]
    assert ids.index(second.id) < ids.index(first.id)


async def test_latest_an_alias_and_the_explicit_version_are_one_job(store, fetch_json, monkeypatch):
    """Jobs are keyed by the version a ref resolves to: three spellings of version 1, one build."""
    import threading

    from mlflow import MlflowClient

    release, calls = threading.Event(), []

    def slow_build(ref, **kwargs):  # the handler's keying is under test here, not the build itself
        calls.append(str(ref))
        release.wait(30)
        return {"ref": str(ref)}

    monkeypatch.setattr(api, "build", slow_build)
    MlflowClient().set_registered_model_alias(store["name"], "champion", "1")
    try:
        ids = set()
        for ref in (store["name"], f"{store['name']}/1", f"{store['name']}@champion", f"models:/{store['name']}@latest"):
            status, job = await fetch_json("builds", method="POST", body={"ref": ref})
            assert status == 202, job
            assert job["ref"] == f"{store['name']}/1"
            ids.add(job["id"])
        assert len(ids) == 1
    finally:
        release.set()
    job = await _poll(fetch_json, ids.pop(), timeout=30)
    assert job["state"] == "succeeded" and calls == [f"{store['name']}/1"]


@pytest.fixture
def job_left_running(tmp_path, monkeypatch):
    """A job file left by a server that stopped while a build ran (the next server reads PYML_JOBS_FILE)."""
    import threading

    from pyml_jupyter.jobs import JobManager

    state = tmp_path / "jobs.json"
    monkeypatch.setenv("PYML_JOBS_FILE", str(state))
    previous, release = JobManager(state_file=state), threading.Event()
    job = previous.submit("build", "churn/3", lambda p: (p.set_stage("building image", 0.4), release.wait(30)))
    yield job
    release.set()
    previous.shutdown(wait=True)


async def test_a_job_running_when_the_server_restarted_is_listed_as_lost(job_left_running, fetch_json):
    status, body = await fetch_json("jobs")
    assert status == 200
    (job,) = [job for job in body["jobs"] if job["id"] == job_left_running.id]
    assert job["state"] == "lost" and job["ref"] == "churn/3"
    assert job["progress"]["state"] == "lost"
    assert "stopped while this build was" in job["error"]["message"]
    status, again = await fetch_json("jobs", job_left_running.id)
    assert status == 200 and again["state"] == "lost"


async def _poll(fetch_json, job_id: str, timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        status, job = await fetch_json("jobs", job_id)
        assert status == 200
        if job["state"] in ("succeeded", "failed", "lost"):
            return job
        assert time.monotonic() < deadline, f"job still {job['state']} after {timeout}s: {job['progress']}"
        await asyncio.sleep(0.5)


# ---------------------------------------------------------------------------------------- the full flow


@pytest.mark.docker
async def test_deploy_poll_test_and_stop(store, fetch_json, needs_docker):
    ref = f"{store['name']}/1"
    try:
        status, job = await fetch_json("deployments", method="POST", body={"ref": ref, "workers": 2})
        assert status == 202
        assert job["kind"] == "deploy" and job["ref"] == ref

        # a second click while it runs joins the same job
        status, again = await fetch_json("deployments", method="POST", body={"ref": ref})
        assert status == 202 and again["id"] == job["id"]

        # the loop stays responsive while the image builds
        status, _ = await fetch_json("config")
        assert status == 200

        job = await _poll(fetch_json, job["id"], timeout=900)
        assert job["state"] == "succeeded", job["error"]
        assert job["progress"]["log_lines"] > 0
        assert job["result"]["url"].startswith("http://127.0.0.1:")

        status, body = await fetch_json("deployments")
        assert status == 200
        (deployed,) = [d for d in body["deployments"] if d["url"] == job["result"]["url"]]
        import docker

        env = docker.from_env().containers.get(deployed["container_id"]).attrs["Config"]["Env"]
        assert "PYML_WORKERS=2" in env  # the panel's workers setting reaches the container

        _, body = await fetch_json("models")
        (model,) = [m for m in body["models"] if m["name"] == store["name"]]
        version = model["versions"][0]
        assert version["image"] is not None
        assert version["deployment"]["status"] == "running"

        status, logs = await fetch_json("deployments", store["name"], "1", "logs", params={"tail": "5"})
        assert status == 200 and isinstance(logs["lines"], list) and len(logs["lines"]) <= 5

        status, tested = await fetch_json("tests", method="POST", body={"ref": ref, "target": "container"})
        assert status == 202 and tested["kind"] == "test"
        tested = await _poll(fetch_json, tested["id"], timeout=300)
        assert tested["state"] == "succeeded", tested["error"]
        report = tested["result"]
        assert report["ok"] is True
        assert report["target"] == "container"
        assert report["n_rows"] == 3 and report["n_mismatched"] == 0
        assert report["rows"]["columns"] == ["x", "y (notebook)", "y (container)", "|diff|", "match"]
        assert [row[-1] for row in report["rows"]["data"]] == ["✓", "✓", "✓"]

        status, tested = await fetch_json("tests", method="POST", body={"ref": ref})  # every target by default
        tested = await _poll(fetch_json, tested["id"], timeout=600)
        assert tested["state"] == "succeeded", tested["error"]
        table = tested["result"]
        assert [t["key"] for t in table["targets"]] == ["notebook", "fresh_process", "http", "grpc", "spark"]
        assert all(t["status"] == "match" for t in table["targets"]), table["targets"]
        assert table["ok"] is True and len(table["table"]["data"]) == 3
        assert tested["progress"]["stage"] == "comparing"

        status, body = await fetch_json("deployments", store["name"], "1", method="DELETE")
        assert status == 200
        assert len(body["stopped"]) == 1
        _, body = await fetch_json("deployments")
        assert not any(d["url"] == job["result"]["url"] for d in body["deployments"])
    finally:
        try:
            api.stop(ref)
        except Exception:  # noqa: BLE001 - already stopped
            pass
