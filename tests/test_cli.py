"""The `pyml` command line: a thin face over the core API, exercised as a user runs it (a real process)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import pyml_jupyter
from conftest import example_frame
from mlflow_fixtures import use_tracking_uri
from pyml_jupyter import DataFrameModel
from processes import free_port


class Doubler(DataFrameModel):
    def predict(self, df):
        return pd.DataFrame({"twice": df["x"] * 2}, index=df.index)


class Identity(DataFrameModel):
    def predict(self, df):
        return df[["x"]].copy()


def pyml(*args: str, cwd: Path, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pyml_jupyter.cli", *args], cwd=cwd, env=env or os.environ.copy(),
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def store(tmp_path):
    with use_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}", tmp_path) as uri:
        yield uri


def _serve_and_predict(args: list[str], cwd: Path, port: int, frame) -> list[dict]:
    process = subprocess.Popen([sys.executable, "-m", "pyml_jupyter.cli", "serve", *args, "--port", str(port)],
                               cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=1)
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"`pyml serve` did not come up:\n{process.stdout.read().decode()}")
                time.sleep(0.2)
        body = json.dumps({"dataframe_split": {"columns": list(frame.columns),
                                               "data": frame.astype(object).values.tolist()}}).encode()
        request = urllib.request.Request(f"http://127.0.0.1:{port}/invocations", data=body,
                                         headers={"Content-Type": "application/json"})
        return json.loads(urllib.request.urlopen(request, timeout=30).read())["predictions"]
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)


def test_serve_runs_a_package_folder_without_docker(example_package, tmp_path):
    from pyml_jupyter.serving.loader import load_package

    frame = example_frame(4, seed=5)
    predictions = _serve_and_predict([str(example_package)], tmp_path, free_port(), frame)
    expected = load_package(example_package).predict(frame)
    assert [p["label"] for p in predictions] == expected["label"].tolist()
    assert [p["score"] for p in predictions] == expected["score"].tolist()


def test_serve_runs_a_registered_version(store, tmp_path):
    pyml_jupyter.register(Doubler, "cli_doubler", pd.DataFrame({"x": np.arange(3, dtype=np.int64)}))
    predictions = _serve_and_predict(["cli_doubler/1"], tmp_path, free_port(), pd.DataFrame({"x": [5, 7]}))
    assert predictions == [{"twice": 10}, {"twice": 14}]


def test_models_lists_registered_versions(store, tmp_path):
    pyml_jupyter.register(Identity, "cli_identity", pd.DataFrame({"x": [1.0, 2.0]}))
    result = pyml("models", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "cli_identity" in result.stdout and "passed" in result.stdout


def test_a_user_mistake_is_one_message_and_exit_code_2(store, tmp_path):
    result = pyml("build", "not a valid name!", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.startswith("error: ") and "not a valid model name" in result.stderr
    assert "Traceback" not in result.stderr


def test_deploy_limits_are_checked_and_reported_in_one_line(store, tmp_path):
    result = pyml("deploy", "cli_identity", "--memory", "lots", "--pids-limit", "256", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.startswith("error: memory must be a size") and "Traceback" not in result.stderr


def test_an_unknown_model_is_reported_not_raised(store, tmp_path):
    result = pyml("test", "never_registered", cwd=tmp_path)
    assert result.returncode == 2
    assert "is not registered" in result.stderr and "Traceback" not in result.stderr
    assert "Register it from a notebook: %pyml_register or pyml_jupyter.register()." in result.stderr


REGISTER_SCRIPT = """
import pandas as pd
from pyml_jupyter import DataFrameModel, register


class Twice(DataFrameModel):
    def predict(self, df):
        return pd.DataFrame({"y": df["x"] * 2.0}, index=df.index)


register(Twice, "quiet_twice", pd.DataFrame({"x": [1.0, 2.0]}))
"""


def _register_in_a_fresh_store(folder: Path, **env: str) -> str:
    """Register a model in a new process on a new store; what it printed (stdout and stderr)."""
    folder.mkdir()
    (folder / "register.py").write_text(REGISTER_SCRIPT)
    environment = {k: v for k, v in os.environ.items() if k != "PYML_MLFLOW_LOGS"}
    environment.update(MLFLOW_TRACKING_URI=f"sqlite:///{folder / 'mlflow.db'}", **env)
    result = subprocess.run([sys.executable, "register.py"], cwd=folder, env=environment, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return result.stdout + result.stderr


def test_mlflow_info_lines_stay_out_of_the_output(tmp_path):
    printed = _register_in_a_fresh_store(tmp_path / "quiet")
    assert "Creating initial MLflow database tables" not in printed
    assert "Successfully registered model" not in printed


def test_pyml_mlflow_logs_shows_mlflow_info_lines(tmp_path):
    printed = _register_in_a_fresh_store(tmp_path / "loud", PYML_MLFLOW_LOGS="1")
    assert "Creating initial MLflow database tables" in printed
    assert "Successfully registered model 'quiet_twice'" in printed


def _without_docker_and_java(tmp_path: Path) -> dict:
    env = {**os.environ, "DOCKER_HOST": "unix:///nonexistent/docker.sock", "PATH": os.path.dirname(sys.executable)}
    env.pop("JAVA_HOME", None)
    return env


def test_test_all_json_prints_the_parity_table_with_skipped_targets(store, tmp_path):
    pyml_jupyter.register(Doubler, "cli_parity", pd.DataFrame({"x": np.arange(4, dtype=np.int64)}))
    result = pyml("test", "cli_parity", "--all", "--json", cwd=tmp_path, env=_without_docker_and_java(tmp_path))
    assert result.returncode == 0, result.stderr
    table = json.loads(result.stdout.strip().splitlines()[-1])
    assert table["ok"] is True and table["ref"] == "cli_parity/1"
    statuses = {t["key"]: t["status"] for t in table["targets"]}
    assert statuses == {"notebook": "match", "fresh_process": "match", "http": "skipped", "grpc": "skipped",
                        "spark": "skipped"}
    assert "PYML-PROGRESS" in result.stderr  # progress events, for a parent process to replay


def test_test_all_prints_the_table_as_text(store, tmp_path):
    pyml_jupyter.register(Doubler, "cli_parity_text", pd.DataFrame({"x": np.arange(2, dtype=np.int64)}))
    result = pyml("test", "cli_parity_text", "--all", cwd=tmp_path, env=_without_docker_and_java(tmp_path))
    assert result.returncode == 0, result.stderr
    assert "✓ cli_parity_text/1: the same predictions on 2 targets (3 skipped" in result.stdout
    assert "Docker engine not reachable" in result.stdout


def test_an_error_with_json_is_one_json_line_and_exit_code_2(store, tmp_path):
    result = pyml("test", "never_registered", "--json", cwd=tmp_path)
    assert result.returncode == 2
    error = json.loads(result.stdout)
    assert error["error"] == "not_found" and error["status"] == 404


def test_prune_removes_nothing_of_a_model_without_images_and_refuses_a_version(store, tmp_path):
    result = pyml("prune", "cli_never_built", "--keep", "2", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "Removed 0 image(s) of cli_never_built" in result.stdout
    result = pyml("prune", "cli_never_built/3", cwd=tmp_path)
    assert result.returncode == 2 and "prune takes a model name, not a version" in result.stderr
