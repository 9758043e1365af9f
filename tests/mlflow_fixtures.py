"""Real MLflow stores for the tests (imported by test_register and test_magics).

``mlflow_server`` starts a real ``mlflow server`` process once per session (SQLite backend, artifacts served
by the server from a temporary folder) and stops it at the end; without one, its tests are skipped, and
under CI=true they fail. ``use_tracking_uri`` points this process and its children at a store.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from conftest import IN_CI
from processes import free_port

SERVER_START_TIMEOUT = float(os.environ.get("PYML_TEST_MLFLOW_SERVER_TIMEOUT", "180"))


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory):
    """The URL of a real ``mlflow server`` (SQLite backend, proxied artifacts), stopped at the end."""
    root = tmp_path_factory.mktemp("mlflow-server")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = open(root / "server.log", "wb")
    command = [
        sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
        "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
        "--artifacts-destination", str(root / "artifacts"),
    ]
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    process = subprocess.Popen(command, cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT,
                               start_new_session=True)
    try:
        deadline = time.monotonic() + SERVER_START_TIMEOUT
        while not _healthy(url):
            if process.poll() is not None or time.monotonic() > deadline:
                tail = (root / "server.log").read_text(errors="replace")[-2000:]
                message = f"`mlflow server` did not become healthy at {url}:\n{tail}"
                if IN_CI:
                    pytest.fail(message)
                pytest.skip(message)
            time.sleep(0.5)
        yield url
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        log.close()


@pytest.fixture(scope="module", params=["local", pytest.param("server", marks=pytest.mark.mlflow_server)])
def store(request, tmp_path_factory):
    """A real MLflow store of the module: a local SQLite file, or a real ``mlflow server`` process. Work happens in a tmp dir."""
    workdir = tmp_path_factory.mktemp(f"store-{request.param}")
    if request.param == "local":
        uri = f"sqlite:///{workdir / 'mlflow.db'}"
    else:
        uri = request.getfixturevalue("mlflow_server")
    with use_tracking_uri(uri, workdir):
        yield uri


def all_runs(view: str = "ALL") -> list:
    from mlflow import MlflowClient
    from mlflow.entities import ViewType

    client = MlflowClient()
    experiments = [e.experiment_id for e in client.search_experiments(view_type=ViewType.ALL)]
    return client.search_runs(experiments, run_view_type=getattr(ViewType, view), max_results=10_000)


def logged_models() -> set[str]:
    """The ids of every logged model (MLflow 3's model entities, which outlive their run unless deleted)."""
    from mlflow import MlflowClient
    from mlflow.entities import ViewType

    client = MlflowClient()
    experiments = [e.experiment_id for e in client.search_experiments(view_type=ViewType.ALL)]
    return {m.model_id for m in client.search_logged_models(experiments, max_results=1000)}


def registered_models(name: str) -> list:
    from mlflow import MlflowClient

    return MlflowClient().search_registered_models(filter_string=f"name = '{name}'")



@contextlib.contextmanager
def use_tracking_uri(uri: str, workdir: Path):
    """Point MLflow (this process, and subprocesses through the environment) at ``uri``; work in ``workdir``.

    The package cache goes to ``workdir`` too, so nothing is shared with other stores or the user's cache.
    """
    import mlflow

    with pytest.MonkeyPatch.context() as mp, registry_uri(None):
        mp.setenv("MLFLOW_TRACKING_URI", uri)
        mp.setenv("PYML_CACHE_DIR", str(workdir / "pyml-cache"))
        mp.chdir(workdir)
        mlflow.set_tracking_uri(uri)
        try:
            yield uri
        finally:
            if mlflow.active_run() is not None:
                mlflow.end_run()
            mlflow.set_tracking_uri(None)


@contextlib.contextmanager
def registry_uri(uri: str | None):
    """Use another model registry than the tracking store (``None``: the tracking store's own), then restore.

    ``mlflow.set_registry_uri`` exports ``MLFLOW_REGISTRY_URI`` and ``set_registry_uri(None)`` does not unset
    it, so the variable is restored here by hand.
    """
    import mlflow

    previous = os.environ.pop("MLFLOW_REGISTRY_URI", None)
    mlflow.set_registry_uri(uri)
    try:
        yield uri
    finally:
        mlflow.set_registry_uri(None)
        os.environ.pop("MLFLOW_REGISTRY_URI", None)
        if previous is not None:
            os.environ["MLFLOW_REGISTRY_URI"] = previous
