"""A real server process (``python -m pyml_jupyter.serving``) while it predicts for seconds: health answers at
once, even when the model's own Python code holds the CPU; SIGTERM lets requests in flight finish, refuses
new connections, and then the process exits cleanly."""

from __future__ import annotations

import http.client
import json
import signal
import textwrap
import threading
import time
from pathlib import Path

import pytest

from processes import serving
from test_serving_batching import write_package

# The echo model of test_serving_batching, except that city "spin" busy-loops in pure Python for x seconds
# (holding the GIL but for the interpreter's switch interval), like a model's feature code would.
SPIN = textwrap.dedent(
    """
    def _spin(seconds):
        end = time.perf_counter() + seconds
        n = 0
        while time.perf_counter() < end:
            n += 1
        return n
    """
)


def spin_package(directory: Path) -> Path:
    package = write_package(directory)
    source = (package / "model.py").read_text()
    source = source.replace("class Echo(DataFrameModel):", SPIN + "\n\nclass Echo(DataFrameModel):")
    spun = source.replace('        sleeping = df["city"] == "sleep"\n',
                          '        if (df["city"] == "spin").any():\n'
                          '            _spin(float(df["x"].max()))\n'
                          '        sleeping = df["city"] == "sleep"\n')
    assert spun != source
    (package / "model.py").write_text(spun)
    return package


@pytest.fixture
def server(tmp_path, request):
    workers = getattr(request, "param", 1)
    with serving(spin_package(tmp_path / "spin"), "--workers", str(workers), "--log-level", "info") as running:
        yield running.port, running.process


class SlowRequest(threading.Thread):
    """``POST /invocations`` of one row that makes the model work ``seconds``, in a thread."""

    def __init__(self, port: int, city: str, seconds: int) -> None:
        super().__init__(daemon=True)
        self.port, self.body = port, json.dumps({"dataframe_split": {"columns": ["x", "city"],
                                                                     "data": [[seconds, city]]}})
        self.status: int | None = None
        self.answer: dict | None = None
        self.finished = 0.0

    def run(self) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        connection.request("POST", "/invocations", body=self.body, headers={"Content-Type": "application/json"})
        response = connection.getresponse()
        self.status, self.answer = response.status, json.loads(response.read())
        self.finished = time.monotonic()


def get(port: int, path: str) -> tuple[int, float]:
    started = time.perf_counter()
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    connection.request("GET", path)
    response = connection.getresponse()
    response.read()
    return response.status, time.perf_counter() - started


def test_health_answers_within_milliseconds_while_pure_python_model_code_runs(server):
    port, _ = server
    slow = SlowRequest(port, "spin", 3)
    slow.start()
    time.sleep(0.5)
    seconds = []
    for path in ("/ping", "/health", "/v2/health/live", "/v2/health/ready", "/metrics") * 3:
        status, elapsed = get(port, path)
        assert status == 200
        seconds.append(elapsed)
    assert slow.is_alive(), "the 3 s predict should still be running"
    # Milliseconds (the interpreter hands the GIL over every 5 ms); the bound leaves room for a loaded machine.
    assert sorted(seconds)[len(seconds) // 2] < 0.1 and max(seconds) < 0.5, seconds
    slow.join(timeout=30)
    assert slow.status == 200 and slow.answer["predictions"] == [{"y": 6, "tag": "spin!"}]


@pytest.mark.parametrize("server", [1, 2], indirect=True, ids=["1-worker", "2-workers"])
def test_sigterm_drains_the_request_in_flight_then_exits(server):
    port, process = server
    slow = SlowRequest(port, "sleep", 3)
    slow.start()
    time.sleep(0.7)  # the 3 s predict is running
    process.send_signal(signal.SIGTERM)
    signalled = time.monotonic()

    refused = False  # new connections are refused while the old request drains
    while time.monotonic() - signalled < 2 and not refused:
        try:
            get(port, "/ping")
            time.sleep(0.05)
        except OSError:
            refused = True
    assert refused, "the server kept accepting connections after SIGTERM"
    assert process.poll() is None, "the server exited before its request in flight was answered"

    slow.join(timeout=30)
    assert slow.status == 200 and slow.answer["predictions"] == [{"y": 6, "tag": "sleep!"}]
    # uvicorn re-raises the signal once it has shut down: the exit status says "terminated by SIGTERM" (143 in
    # a container), after a complete shutdown.
    assert process.wait(timeout=30) in (0, -signal.SIGTERM)
    log = process.stdout.read()
    assert "Application shutdown complete" in log and "Finished server process" in log, log
