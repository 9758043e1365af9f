"""Faults with real components: what is left behind, and what the user is told, when something dies mid-way.

Each test breaks a real component at a real moment: the ``mlflow server`` process killed while ``register()``
logs, Ctrl-C during ``register()``, a serving container killed, a Spark job's process killed mid-write, and a
Docker engine stopped mid-build (a second, isolated ``dockerd`` the test starts, never the shared one).
"""

from __future__ import annotations

import contextlib
import json
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

from docker_fixtures import built, docker_engine, pyml_cache, session_package  # noqa: F401
from mlflow_fixtures import _healthy, use_tracking_uri
from notebook_shell import ipython  # noqa: F401
from processes import free_port
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
        self.root, self.port = root, free_port()
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


CTRL_C_CHILD = """
import sys
sys.path.insert(0, {tests!r})
from pyml_jupyter import api
from test_faults import Doubler, SAMPLE
api.register(Doubler, {name!r}, SAMPLE)
"""


def test_ctrl_c_during_register_rolls_back_the_run_and_the_version(tmp_path):
    # A real Ctrl-C (SIGINT) to a fresh interpreter registering the model, once logging into its run began.
    name = unique_name("ctrl-c")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "PYML_CACHE_DIR": str(tmp_path / "pyml-cache")}
    env.pop("MLFLOW_REGISTRY_URI", None)
    child = subprocess.Popen([sys.executable, "-c", CTRL_C_CHILD.format(tests=str(Path(__file__).parent), name=name)],
                             cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 180
    while not logging_began(tmp_path) and child.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert child.poll() is None, f"register ended before it could be interrupted: {child.communicate()}"
    child.send_signal(signal.SIGINT)
    _, stderr = child.communicate(timeout=120)

    assert stderr.rstrip().endswith("KeyboardInterrupt"), stderr[-3000:]
    with use_tracking_uri(uri, tmp_path):
        assert active_runs_named(f"pyml-{name}") == []
        assert versions_of(name) == []


# -- Docker: a serving container killed --------------------------------------------------------------------------


@pytest.fixture
def jp_server_config(jp_server_config):
    return {"ServerApp": {"jpserver_extensions": {"pyml_jupyter": True}}}


@pytest.fixture
def killed_deployment(built, docker_engine):
    """A deployment of the session's image whose container was then killed (SIGKILL, exit code 137)."""
    from docker_fixtures import model_name
    from pyml_jupyter.deployments import run_deployment, stop_deployment

    _, image, _ = built
    name = model_name("killed")
    deployment = run_deployment(image, name=name, version="1", client=docker_engine)
    container = docker_engine.containers.get(deployment.container_id)
    container.kill()
    for _ in range(100):
        container.reload()
        if container.status == "exited":
            break
        time.sleep(0.1)
    expected_tail = container.logs(tail=10).decode("utf-8", "replace").rstrip()
    try:
        yield name, expected_tail
    finally:
        stop_deployment(name, client=docker_engine)


@pytest.mark.docker
async def test_a_killed_container_is_listed_as_exited_with_its_exit_code_and_last_log_lines(
        killed_deployment, jp_fetch, ipython):
    import json

    from IPython.utils.capture import capture_output

    name, expected_tail = killed_deployment
    assert expected_tail  # the server had written its start-up lines

    (listed,) = [d for d in api.deployments() if d.name == name]
    assert (listed.status, listed.exit_code, listed.state) == ("exited", 137, "exited (137)")
    assert listed.log_tail == expected_tail
    last_line = expected_tail.splitlines()[-1]

    ipython.run_line_magic("load_ext", "pyml_jupyter")
    with capture_output() as captured:
        table = ipython.run_line_magic("pyml_deployments", "")
    assert "exited (137)" in repr(table) and last_line in repr(table)
    assert "exited (137)" in table._repr_html_()
    assert not captured.stderr

    response = await jp_fetch("pyml", "deployments")
    (body,) = [d for d in json.loads(response.body)["deployments"] if d["name"] == name]
    assert (body["status"], body["exit_code"], body["log_tail"]) == ("exited", 137, expected_tail)


# -- Spark: a batch job's process killed mid-write ---------------------------------------------------------------


class SlowDoubler(DataFrameModel):
    """y = 2x, slowly when PYML_TEST_SLOW is set (in the job that is killed)."""

    def predict(self, df):
        if os.environ.get("PYML_TEST_SLOW"):
            time.sleep(0.5)
        return pd.DataFrame({"y": df["x"] * 2.0}, index=df.index)


BATCH_JOB = """
import json, sys
from pyml_jupyter.batch import predict_offline, spark_session

package, warehouse, rows = sys.argv[1], sys.argv[2], int(sys.argv[3])
spark = spark_session(warehouse_dir=warehouse, master="local[1]")
spark.sql("CREATE DATABASE IF NOT EXISTS faults")
if not spark.catalog.tableExists("faults.inputs"):
    spark.range(rows).selectExpr("CAST(id AS DOUBLE) AS x").write.saveAsTable("faults.inputs")
result = predict_offline(package, "SELECT x FROM faults.inputs", "faults.scores", spark=spark, batch_size=50)
scores = spark.table("faults.scores").agg({"y": "sum"}).collect()[0][0]
print(json.dumps({"rows": result.rows, "sum": scores, "tables": sorted(t.name for t in spark.catalog.listTables("faults"))}))
"""


def batch_job(package: Path, warehouse: Path, rows: int, *, slow: bool) -> subprocess.Popen:
    """A batch job in its own process (and process group: its JVM and Python workers go with it)."""
    env = {**os.environ, "PYML_TEST_SLOW": "1" if slow else ""}
    env.pop("PYML_SPARK_MASTER", None)
    return subprocess.Popen([sys.executable, "-c", BATCH_JOB, str(package), str(warehouse), str(rows)],
                            cwd=warehouse.parent, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)


@pytest.mark.spark
def test_a_batch_job_killed_mid_write_leaves_no_table_and_the_next_run_sweeps_its_temporary_table(tmp_path):
    from spark_fixtures import require_spark

    from pyml_jupyter.batch.destination import host_tag
    from pyml_jupyter.checks import run_check

    require_spark()
    report = run_check(SlowDoubler, SAMPLE, package_dir=tmp_path / "package")
    assert report.ok, report.summary()
    warehouse, rows = tmp_path / "spark-warehouse", 400
    database = warehouse / "faults.db"

    killed = batch_job(tmp_path / "package", warehouse, rows, slow=True)
    temporaries = lambda: sorted(p.name for p in database.glob("pyml_tmp_*"))  # noqa: E731
    deadline = time.monotonic() + 240
    while not temporaries():
        assert killed.poll() is None, killed.communicate()
        assert time.monotonic() < deadline, "the job never started writing"
        time.sleep(0.2)
    time.sleep(2)  # mid-write: the model sleeps 0.5 s per 50-row batch of 400
    os.killpg(killed.pid, signal.SIGKILL)
    killed.wait()

    (left,) = temporaries()
    assert left.startswith(f"pyml_tmp_{host_tag()}_{killed.pid}_")  # named for its host and process
    assert not (database / "scores").exists()  # no output table, not even a partial one

    again = batch_job(tmp_path / "package", warehouse, rows, slow=False)
    out, err = again.communicate(timeout=600)
    assert again.returncode == 0, err[-4000:]
    result = json.loads(out.strip().splitlines()[-1])
    assert result == {"rows": rows, "sum": 2.0 * sum(range(rows)), "tables": ["inputs", "scores"]}
    assert temporaries() == []  # swept: the killed job's process is gone


# -- Docker: the engine stopped mid-build ------------------------------------------------------------------------


# The second engine gets a bridge of its own: started with `--bridge none`, dockerd deletes the host's
# `docker0`, which the shared engine's containers need.
BRIDGE, BRIDGE_ADDRESS = "pymlfaults0", "10.213.57.1/24"


def _own_bridge(up: bool) -> None:
    """Create (or delete) the isolated engine's bridge interface."""
    subprocess.run(["ip", "link", "delete", BRIDGE], check=False, capture_output=True)
    if up:
        for cmd in (["ip", "link", "add", BRIDGE, "type", "bridge"], ["ip", "addr", "add", BRIDGE_ADDRESS, "dev", BRIDGE],
                    ["ip", "link", "set", BRIDGE, "up"]):
            subprocess.run(cmd, check=True, capture_output=True)


class IsolatedDockerd:
    """A second ``dockerd`` of the test's own: its socket, data root, exec root (and containerd), pidfile.

    The shared engine other tests use is never touched; this one may be stopped and started at will.
    """

    def __init__(self, root: Path) -> None:
        self.root, self.socket = root, root / "docker.sock"
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        import docker

        log = open(self.root / "dockerd.log", "ab")
        self.process = subprocess.Popen(
            ["dockerd", "--host", f"unix://{self.socket}", "--data-root", str(self.root / "data"),
             "--exec-root", str(self.root / "exec"), "--pidfile", str(self.root / "docker.pid"),
             "--bridge", BRIDGE, "--iptables=false", "--ip6tables=false", "--ip-masq=false",
             "--containerd-namespace", "pyml-faults", "--containerd-plugins-namespace", "pyml-faults-plugins"],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 60
        while True:
            assert self.process.poll() is None, (self.root / "dockerd.log").read_text()[-3000:]
            with contextlib.suppress(Exception):
                docker.DockerClient(base_url=f"unix://{self.socket}", timeout=5).ping()
                return
            assert time.monotonic() < deadline, (self.root / "dockerd.log").read_text()[-3000:]
            time.sleep(0.3)

    def client(self):
        import docker

        return docker.DockerClient(base_url=f"unix://{self.socket}", timeout=600)

    def stop(self) -> None:
        """Stop the engine as `systemctl stop docker` would (SIGTERM), and wait until it is gone."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


@pytest.fixture
def isolated_dockerd(docker_engine):
    import shutil
    import tempfile

    from docker_fixtures import BASE_IMAGE

    if shutil.which("dockerd") is None:
        pytest.fail("dockerd is not installed: the engine fault test starts a second, isolated one")
    root = Path(tempfile.mkdtemp(prefix="pyml-d-", dir="/tmp"))  # short: a unix socket path is limited
    had_docker0 = Path("/sys/class/net/docker0").exists()
    _own_bridge(True)
    engine = IsolatedDockerd(root)
    try:
        engine.start()
        saved = subprocess.Popen(["docker", "save", BASE_IMAGE], stdout=subprocess.PIPE)  # from the shared engine
        subprocess.run(["docker", "-H", f"unix://{engine.socket}", "load"], stdin=saved.stdout, check=True,
                       capture_output=True, timeout=300)
        assert saved.wait(60) == 0
        yield engine
    finally:
        engine.stop()
        for line in reversed(Path("/proc/mounts").read_text().splitlines()):  # whatever a crash left mounted
            if str(root) in line.split()[1]:
                subprocess.run(["umount", "-l", line.split()[1]], check=False)
        shutil.rmtree(root, ignore_errors=True)
        _own_bridge(False)
    assert not had_docker0 or Path("/sys/class/net/docker0").exists(), "the isolated engine removed docker0"


@pytest.mark.docker
def test_dockerd_stopped_mid_build_gives_a_clear_error_and_leaves_no_tag(isolated_dockerd, pyml_cache,
                                                                        session_package):
    import docker

    from docker_fixtures import BASE_IMAGE
    from pyml_jupyter.errors import BuildError
    from pyml_jupyter.images.builder import build_image
    from pyml_jupyter.progress import Progress

    name, progress, stopping = unique_name("dockerd"), Progress("build"), []

    def stop_during_the_dependency_step(_, event, line) -> None:
        if event == "log" and line.startswith("Step ") and "RUN python -m venv" in line and not stopping:
            stopping.append(threading.Thread(target=isolated_dockerd.stop, daemon=True))
            stopping[0].start()

    progress.subscribe(stop_during_the_dependency_step)
    with pytest.raises(BuildError) as raised:
        build_image(session_package, name=name, version="1", base_image=BASE_IMAGE, progress=progress,
                    client=isolated_dockerd.client())

    assert stopping, "the build never reached its dependency step"
    stopping[0].join(90)  # the engine has finished shutting down
    message = raised.value.message
    assert f"Building image pyml/{name}:1 failed at step `RUN python -m venv" in message
    assert "the Docker engine stopped answering mid-build" in message and "nothing was tagged" in message
    isolated_dockerd.start()  # the engine back, on the same data root
    with pytest.raises(docker.errors.ImageNotFound):
        isolated_dockerd.client().images.get(f"pyml/{name}:1")
