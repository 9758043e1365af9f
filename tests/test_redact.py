"""A tracking URI's credentials never show: not in any face, message, log or folder name.

The tracking URI carries a user, a password and secret query parameters. A real ``mlflow server`` answers
through it (the user and password reach it as basic auth), and the same credentials pointing at a closed
port make MLflow fail with its own exception text. Every output surface is then grepped for the secrets:
``api.config()``, magic output (text and HTML), HTML reprs, REST bodies and the Jupyter server's log, the
CLI's output, and the package cache's folder names.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pandas as pd
import pytest
from IPython.utils.capture import capture_output

from mlflow_fixtures import mlflow_server, use_tracking_uri  # noqa: F401
from notebook_shell import ipython, run, shell  # noqa: F401
from pyml_jupyter import DataFrameModel, api
from pyml_jupyter.uris import redact
from processes import free_port

USER, PASSWORD, TOKEN, KEY = "alice-user-7f3", "pw-s3cr3t-91b", "tok-s3cr3t-c42", "key-s3cr3t-d17"
SECRETS = (USER, PASSWORD, TOKEN, KEY)
FAIL_FAST = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"}


class Doubler(DataFrameModel):
    def predict(self, df):
        return pd.DataFrame({"y": df["x"] * 2.0}, index=df.index)


SAMPLE = pd.DataFrame({"x": [1.0, 2.0, 3.0]})


def assert_no_secret(surface: str, text: str) -> None:
    leaked = [s for s in SECRETS if s in text]
    assert not leaked, f"{surface} shows {leaked}:\n{text[:3000]}"


@pytest.fixture(scope="module")
def good_uri(mlflow_server) -> str:
    """The real server, reached with a user and password in the URI."""
    return mlflow_server.replace("http://", f"http://{USER}:{PASSWORD}@")


@pytest.fixture(scope="module")
def bad_uri() -> str:
    """The same credentials plus secret query parameters, pointing at a port where nothing listens."""
    return f"http://{USER}:{PASSWORD}@127.0.0.1:{free_port()}/?token={TOKEN}&api_key={KEY}"


@pytest.fixture(scope="module")
def store(good_uri, tmp_path_factory):
    """The good store with a model registered through it, and the folder the work happened in."""
    workdir = tmp_path_factory.mktemp("redact")
    with use_tracking_uri(good_uri, workdir), pytest.MonkeyPatch.context() as mp:
        for key, value in FAIL_FAST.items():
            mp.setenv(key, value)
        name = f"redact-{uuid.uuid4().hex[:8]}"
        registered = api.register(Doubler, name, SAMPLE)
        yield {"uri": good_uri, "workdir": workdir, "name": name, "registered": registered}


@contextlib.contextmanager
def pointing_at(uri: str):
    import mlflow

    previous = mlflow.get_tracking_uri()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", uri)
        mlflow.set_tracking_uri(uri)
        try:
            yield
        finally:
            mlflow.set_tracking_uri(previous)


def cli(env_uri: str, workdir: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, **FAIL_FAST, "MLFLOW_TRACKING_URI": env_uri, "PYML_CACHE_DIR": str(workdir / "pyml-cache")}
    return subprocess.run([sys.executable, "-m", "pyml_jupyter.cli", *args], cwd=workdir, env=env,
                          capture_output=True, text=True, timeout=120)


def magic_output(shell, line: str) -> str:
    """Everything a cell shows: printed text, every mimetype displayed, and the error it raised."""
    with capture_output() as captured:
        result = shell.run_cell(line, store_history=True)
    shown = [captured.stdout, captured.stderr, str(result.error_in_exec or "")]
    shown += [json.dumps(o.data) for o in captured.outputs]
    if result.result is not None:
        shown.append(json.dumps(shell.display_formatter.format(result.result)[0]))
    return "\n".join(shown)


# -- the function ------------------------------------------------------------------------------------------------


def test_redact_masks_the_user_the_password_and_secret_query_values_only():
    assert redact(f"see https://{USER}:{PASSWORD}@mlflow.example.com:5000/x?token={TOKEN}&run=7 now") == \
        "see https://***@mlflow.example.com:5000/x?token=***&run=7 now"
    assert redact("postgresql://u:p@db/mlflow?sslmode=require&password=hunter2") == \
        "postgresql://***@db/mlflow?sslmode=require&password=***"
    assert redact("sqlite:///tmp/mlflow.db and file:///a@b") == "sqlite:///tmp/mlflow.db and file:///a@b"


# -- the surfaces ------------------------------------------------------------------------------------------------


def test_config_shows_where_models_live_without_credentials(store, bad_uri):
    good = api.config()
    assert_no_secret("api.config()", json.dumps(good))
    assert good["mlflow_ui_url"].startswith("http://***@127.0.0.1:")
    with pointing_at(bad_uri):
        bad = api.config()
    assert_no_secret("api.config()", json.dumps(bad))
    assert "token=***" in bad["mlflow_ui_url"] and "api_key=***" in bad["tracking_uri"]


def test_html_and_text_reprs_of_a_registered_model_and_the_model_list(store):
    from pyml_jupyter.displays import ModelTable

    registered = store["registered"]
    assert_no_secret("ModelVersion._repr_html_", registered._repr_html_())
    assert "http://***@127.0.0.1" in registered._repr_html_()  # the MLflow UI link is kept, without credentials
    assert_no_secret("ModelVersion repr", repr(registered))
    models = api.list_models()
    assert_no_secret("list_models", json.dumps([m.to_dict() for m in models], default=str))
    table = ModelTable(models)
    assert_no_secret("ModelTable", repr(table) + (table._repr_html_() if hasattr(table, "_repr_html_") else ""))


def test_magic_output_and_errors(store, shell, bad_uri):
    run(shell, "%load_ext pyml_jupyter")
    assert_no_secret("%pyml_models", magic_output(shell, "%pyml_models"))
    missing = magic_output(shell, "%pyml_deploy no-such-model-3c1")
    assert "not registered in http://***@127.0.0.1" in missing
    assert_no_secret("%pyml_deploy error", missing)
    with pointing_at(bad_uri):
        failed = magic_output(shell, "%pyml_models")
    assert "MLflow at http://***@127.0.0.1" in failed and "token=***" in failed  # MLflow's own text, redacted
    assert_no_secret("%pyml_models error", failed)


def test_mlflow_exception_text_is_redacted_in_errors(store, bad_uri):
    from pyml_jupyter.errors import PymlError

    with pointing_at(bad_uri), pytest.raises(PymlError) as raised:
        api.list_models()
    assert raised.value.status == 502
    assert_no_secret("TrackingError", str(raised.value) + json.dumps(raised.value.to_dict()))


def test_cli_output_and_errors(store, bad_uri):
    listed = cli(store["uri"], store["workdir"], "models")
    assert listed.returncode == 0, listed.stderr
    assert store["name"] in listed.stdout
    assert_no_secret("pyml models", listed.stdout + listed.stderr)
    missing = cli(store["uri"], store["workdir"], "deploy", "no-such-model-3c1")
    assert missing.returncode == 2 and "not registered in http://***@" in missing.stderr
    assert_no_secret("pyml deploy error", missing.stdout + missing.stderr)
    failed = cli(bad_uri, store["workdir"], "models")
    assert failed.returncode != 0 and "MLflow at http://***@" in failed.stderr
    assert_no_secret("pyml models error", failed.stdout + failed.stderr)


def test_package_cache_folder_names(store):
    package = api.package_path(store["name"])
    cache = store["workdir"] / "pyml-cache"
    assert package.is_relative_to(cache)
    assert_no_secret("the package cache", "\n".join(str(p) for p in cache.rglob("*")))


# -- REST and the Jupyter server log -----------------------------------------------------------------------------


@contextlib.contextmanager
def jupyter_server(uri: str, workdir: Path):
    """A real Jupyter server (the extension enabled) whose MLflow store is ``uri``; yields (base, token, log)."""
    config_dir = workdir / f"jupyter-config-{uuid.uuid4().hex[:6]}"
    config_dir.mkdir()
    (config_dir / "jupyter_server_config.json").write_text(
        json.dumps({"ServerApp": {"jpserver_extensions": {"pyml_jupyter": True}}}))
    port, token = free_port(), uuid.uuid4().hex
    log = config_dir / "server.log"
    env = {**os.environ, **FAIL_FAST, "MLFLOW_TRACKING_URI": uri, "PYML_CACHE_DIR": str(workdir / "pyml-cache"),
           "JUPYTER_CONFIG_DIR": str(config_dir), "JUPYTER_RUNTIME_DIR": str(config_dir / "runtime")}
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "jupyter_server", "--no-browser", "--ServerApp.ip=127.0.0.1",
             f"--ServerApp.port={port}", "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}",
             f"--ServerApp.root_dir={workdir}", "--allow-root", "--ServerApp.log_level=DEBUG"],
            cwd=workdir, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            assert proc.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            with contextlib.suppress(OSError):
                with urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=2):
                    break
            time.sleep(0.5)
        yield base, token, log
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def rest(base: str, token: str, path: str, body: dict | None = None) -> tuple[int, str]:
    request = urllib.request.Request(f"{base}/pyml/{path}", method="POST" if body is not None else "GET",
                                     data=json.dumps(body).encode() if body is not None else None,
                                     headers={"Authorization": f"token {token}"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def wait_for_job(base: str, token: str, job: dict) -> str:
    for _ in range(120):
        status, body = rest(base, token, f"jobs/{job['id']}")
        if json.loads(body)["state"] in ("succeeded", "failed"):
            return body
        time.sleep(0.5)
    raise AssertionError(f"job {job['id']} did not finish")


def test_rest_bodies_and_server_log_with_a_working_store(store):
    with jupyter_server(store["uri"], store["workdir"]) as (base, token, log):
        bodies = [rest(base, token, "models"), rest(base, token, "config"),
                  rest(base, token, "builds", {"ref": "no-such-model-3c1"})]
        status, body = bodies[-1]
        if status == 202:
            bodies.append((200, wait_for_job(base, token, json.loads(body))))
        bodies.append(rest(base, token, "jobs"))
    text = "\n".join(body for _, body in bodies)
    assert store["name"] in bodies[0][1] and "http://***@127.0.0.1" in text
    assert "not registered in http://***@127.0.0.1" in text
    assert_no_secret("REST bodies", text)
    assert_no_secret("the server log", log.read_text(errors="replace"))


def test_rest_bodies_and_server_log_when_mlflow_fails(store, bad_uri):
    with jupyter_server(bad_uri, store["workdir"]) as (base, token, log):
        status, body = rest(base, token, "models")
        config = rest(base, token, "config")[1]
    assert status == 502 and "MLflow at http://***@" in body, body
    assert_no_secret("REST error body", body + config)
    server_log = log.read_text(errors="replace")
    assert "127.0.0.1" in server_log
    assert_no_secret("the server log", server_log)
