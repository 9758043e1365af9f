"""Faults with real components: what is left behind, and what the user is told, when something dies mid-way.

Each test breaks a real component at a real moment: the ``mlflow server`` process killed while ``register()``
logs, Ctrl-C during ``register()``, a serving container killed, a Spark job's process killed mid-write, and a
Docker engine stopped mid-build (a second, isolated ``dockerd`` the test starts, never the shared one).
"""

from __future__ import annotations

import _thread
import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pandas as pd
import pytest

from mlflow_fixtures import _free_port, _healthy, use_tracking_uri
from pyml_jupyter import DataFrameModel, api
from pyml_jupyter.errors import PymlError


class Doubler(DataFrameModel):
    def predict(self, df):
        return pd.DataFrame({"y": df["x"] * 2.0}, index=df.index)


SAMPLE = pd.DataFrame({"x": [1.0, 2.0, 3.0]})


def unique_name(label: str) -> str:
    return f"faults-{label}-{uuid.uuid4().hex[:8]}"


def when(condition, then, timeout: float = 120.0) -> threading.Thread:
    """In a background thread: poll ``condition()`` and call ``then()`` once it holds."""

    def watch() -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(Exception):
                if condition():
                    then()
                    return
            time.sleep(0.02)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


def logging_began(artifacts: Path) -> bool:
    """register() got its run back and logs into it: the contract report is among the run's artifacts.

    (Read from the artifact folder, not the SQLite file: a reader there could lock out MLflow's writes.)
    """
    return any(artifacts.glob("**/contract/report.json"))


def versions_of(name: str) -> list:
    from mlflow import MlflowClient

    return MlflowClient().search_model_versions(f"name = '{name}'")


def active_runs_named(run_name: str) -> list:
    import mlflow

    return [r for r in mlflow.search_runs(search_all_experiments=True, output_format="list")
            if r.data.tags.get("mlflow.runName") == run_name]


# -- MLflow ------------------------------------------------------------------------------------------------------


class MlflowServer:
    """A real ``mlflow server`` on a SQLite file, which a test may kill and start again on the same store."""

    def __init__(self, root: Path) -> None:
        self.root, self.port = root, _free_port()
        self.db, self.url, self.process = root / "mlflow.db", f"http://127.0.0.1:{self.port}", None

    def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
        log = open(self.root / "server.log", "ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(self.port),
             "--workers", "1", "--backend-store-uri", f"sqlite:///{self.db}",
             "--artifacts-destination", str(self.root / "artifacts")],
            cwd=self.root, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 180
        while not _healthy(self.url):
            assert self.process.poll() is None and time.monotonic() < deadline, \
                (self.root / "server.log").read_text()[-3000:]
            time.sleep(0.3)

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()


@pytest.fixture
def mlflow_server_to_kill(tmp_path):
    server = MlflowServer(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.kill()


def test_the_mlflow_server_killed_during_register_gives_a_clear_error_and_no_version(
        mlflow_server_to_kill, tmp_path, monkeypatch):
    server, name = mlflow_server_to_kill, unique_name("killed-server")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    with use_tracking_uri(server.url, tmp_path):
        when(lambda: logging_began(server.root / "artifacts"), server.kill)
        with pytest.raises(PymlError) as raised:
            api.register(Doubler, name, SAMPLE)

        message = raised.value.message
        assert f"registering {name!r} in MLflow ({server.url}) failed" in message
        assert "MLflow could not remove run " in message and "delete them in the MLflow UI" in message
        assert "Connection" in message  # refused, reset or aborted: MLflow's own words, passed on
        server.start()  # the same store, back up: no version was registered
        assert versions_of(name) == []


def test_ctrl_c_during_register_rolls_back_the_run_and_the_version(tmp_path):
    import mlflow

    name = unique_name("ctrl-c")
    with use_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}", tmp_path):
        when(lambda: logging_began(tmp_path), _thread.interrupt_main)
        with pytest.raises(KeyboardInterrupt):
            api.register(Doubler, name, SAMPLE)

        assert active_runs_named(f"pyml-{name}") == []
        assert versions_of(name) == []
        assert mlflow.active_run() is None
