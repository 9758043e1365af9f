"""Health while predicting, and what the predict thread costs a single request.

    .venv/bin/python bench/serving/bench_health.py [--requests 600] [--write-readme]
    .venv/bin/python bench/serving/bench_health.py --smoke   # the sleep case with the predict thread, 60 requests

1. **Health during a slow predict.** A server (``python -m pyml_jupyter.serving``, default settings) gets one
   request whose predict takes 3 s; meanwhile ``/ping``, ``/health``, ``/v2/health/live``,
   ``/v2/health/ready`` and ``/metrics`` are asked every 50 ms, each on a new connection, and their latencies
   recorded. Three kinds of slow predict: ``sleep`` (waits, e.g. for I/O or a native library that releases
   the GIL), ``spin`` (pure-Python model code busy on the CPU) and ``gil`` (one native call that holds the GIL
   for the whole 3 s: ``sum(range(n))``), each with the predict thread (default) and with
   ``PYML_PREDICT_THREAD=0`` (predict on the event loop).
2. **Health during a big parse.** The example scikit-learn model (tests/conftest.py) gets large
   ``dataframe_records`` bodies (2 MB: answered 200; 8 MB: 200k rows, parsed whole, then 413 for
   ``PYML_MAX_ROWS``), three of each, one at a time; meanwhile ``/ping`` is asked every 10 ms on a new
   connection. With the parse process (default: bodies over 256 KiB are parsed in a warm child process) and
   with ``PYML_PARSE_PROCESS_BYTES=0`` (parsed in the server process, on a thread: the JSON parser holds the
   GIL). Also the big requests' own time, both ways.
3. **Single-request latency.** The example model, 1-row ``dataframe_split`` requests sent one at a time on a
   keep-alive connection, to a default server, one without the predict thread and one without the parse
   process; they run side by side and take turns in rounds, so load bursts on a shared machine hit all.

``--write-readme`` replaces the "Health during predictions" section of bench/README.md.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "tests"))
from readme import write_section  # noqa: E402

HEALTH = ("/ping", "/health", "/v2/health/live", "/v2/health/ready", "/metrics")
SLOW_SECONDS = 3

SLOW_MODEL = textwrap.dedent(
    """
    import time
    import pandas as pd
    from pyml_jupyter.serving.contract import DataFrameModel


    class Slow(DataFrameModel):
        def predict(self, df):
            mode, x = df["mode"].iloc[0], float(df["x"].iloc[0])
            if mode == "sleep":
                time.sleep(x)
            elif mode == "spin":
                end = time.perf_counter() + x
                while time.perf_counter() < end:
                    pass
            elif mode == "gil":
                sum(range(int(x * {rate})))  # one native call: the GIL is not handed over until it returns
            return pd.DataFrame({"y": df["x"] * 2}, index=df.index)
    """
)


def gil_rate() -> float:
    """Elements of ``sum(range(n))`` per second on this machine."""
    n = 3 * 10**7
    started = time.perf_counter()
    sum(range(n))
    return n / (time.perf_counter() - started)


def slow_package(directory: Path) -> Path:
    directory.mkdir(parents=True)
    (directory / "model.py").write_text(SLOW_MODEL.replace("{rate}", repr(gil_rate())))
    (directory / "sample.json").write_text(json.dumps({"columns": ["x", "mode"], "data": [[0.001, "sleep"]]}))
    (directory / "requirements.txt").write_text("")
    columns = [{"name": "x", "dtype": "float64", "nullable": False},
               {"name": "mode", "dtype": "string", "nullable": False}]
    contract = {"format_version": 1, "kind": "dataframe", "class_name": "Slow",
                "python_version": platform.python_version(),
                "input_schema": {"type": "dataframe", "columns": columns},
                "output_schema": {"type": "dataframe", "columns": [{"name": "y", "dtype": "float64",
                                                                    "nullable": False}]},
                "artifacts": {}, "takes_artifacts": False, "metadata": {}}
    (directory / "pyml.json").write_text(json.dumps(contract))
    return directory


class Server:
    def __init__(self, package: Path, env: dict | None = None) -> None:
        from processes import free_port

        self.port = free_port()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "pyml_jupyter.serving", str(package), "--port", str(self.port),
             "--log-level", "warning"], env={**os.environ, **(env or {})},
            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if self.get("/ping")[0] == 200:
                    return
            except OSError:
                time.sleep(0.2)
        raise RuntimeError("the server did not start")

    def get(self, path: str) -> tuple[int, float]:
        started = time.perf_counter()
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        connection.request("GET", path)
        response = connection.getresponse()
        response.read()
        connection.close()
        return response.status, time.perf_counter() - started

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)


def post(connection: http.client.HTTPConnection, body: bytes) -> int:
    connection.request("POST", "/invocations", body=body, headers={"Content-Type": "application/json"})
    response = connection.getresponse()
    response.read()
    return response.status


def health_during(server: Server, mode: str) -> dict:
    body = json.dumps({"dataframe_split": {"columns": ["x", "mode"], "data": [[SLOW_SECONDS, mode]]}}).encode()
    done = threading.Event()

    def slow() -> None:
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=120)
        assert post(connection, body) == 200
        done.set()

    thread = threading.Thread(target=slow, daemon=True)
    thread.start()
    time.sleep(0.3)
    seconds = []
    while not done.is_set():
        for path in HEALTH:
            if done.is_set():
                break
            status, elapsed = server.get(path)
            assert status == 200, (path, status)
            seconds.append(elapsed)
            time.sleep(0.05)
    thread.join()
    seconds.sort()
    return {"n": len(seconds), "p50_ms": statistics.median(seconds) * 1e3, "max_ms": seconds[-1] * 1e3}


def big_body(rows: int) -> bytes:
    row = {"x1": 0.25, "x2": -1.5, "city": "nice"}
    return json.dumps({"dataframe_records": [row] * rows}).encode()


def health_during_parse(server: Server, body: bytes, repeat: int = 3) -> dict:
    """``/ping`` every 10 ms while ``body`` is sent ``repeat`` times; the pings' and the big requests' times."""
    statuses, times = [], []

    def big() -> None:
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=120)
        for _ in range(repeat):
            started = time.perf_counter()
            statuses.append(post(connection, body))
            times.append(time.perf_counter() - started)

    thread = threading.Thread(target=big, daemon=True)
    thread.start()
    pings = []
    while thread.is_alive():
        status, elapsed = server.get("/ping")
        assert status == 200
        pings.append(elapsed)
        time.sleep(0.01)
    pings.sort()
    return {"status": statuses[0], "n": len(pings), "p50_ms": statistics.median(pings) * 1e3,
            "max_ms": pings[-1] * 1e3, "request_ms": statistics.median(times) * 1e3}


def latency(servers: dict[str, Server], body: bytes, requests: int, rounds: int = 6) -> dict:
    samples: dict[str, list[float]] = {name: [] for name in servers}
    connections = {name: http.client.HTTPConnection("127.0.0.1", s.port, timeout=30) for name, s in servers.items()}
    for connection in connections.values():
        for _ in range(50):  # warm-up
            post(connection, body)
    for _ in range(rounds):
        for name, connection in connections.items():
            for _ in range(requests // rounds):
                started = time.perf_counter()
                assert post(connection, body) == 200
                samples[name].append(time.perf_counter() - started)
    out = {}
    for name, values in samples.items():
        values.sort()
        out[name] = {"p50_ms": statistics.median(values) * 1e3, "p99_ms": values[int(len(values) * 0.99)] * 1e3}
    return out


def render(health: dict, parse: dict, single: dict, requests: int) -> str:
    lines = ["", "", f"Health routes ({', '.join(HEALTH)}), each on a new connection every 50 ms while one "
             f"{SLOW_SECONDS} s predict runs; one worker, default settings unless said. Milliseconds.", "",
             "| slow predict | predict thread | health p50 | health max | samples |", "|---|---|---:|---:|---:|"]
    for (mode, thread), r in health.items():
        lines.append(f"| {mode} | {thread} | {r['p50_ms']:.1f} | {r['max_ms']:.1f} | {r['n']} |")
    lines += ["", "`/ping` every 10 ms, each on a new connection, while the example model gets a large "
              "`dataframe_records` body three times in a row (one worker; milliseconds):", "",
              "| body | parsed | answer | /ping p50 | /ping max | pings | big request (median) |",
              "|---|---|---:|---:|---:|---:|---:|"]
    for (size, where), r in parse.items():
        lines.append(f"| {size} | {where} | {r['status']} | {r['p50_ms']:.1f} | {r['max_ms']:.1f} | {r['n']} | "
                     f"{r['request_ms']:.0f} |")
    lines += ["", f"Single-request latency, example model, 1-row `dataframe_split`, {requests} sequential requests "
              "per server on one keep-alive connection (servers take turns):", "",
              "| server | p50 ms | p99 ms |", "|---|---:|---:|"]
    for name, r in single.items():
        lines.append(f"| {name} | {r['p50_ms']:.3f} | {r['p99_ms']:.3f} |")
    lines += ["", f"Machine: {os.cpu_count()} CPUs, load average {' '.join(f'{x:.2f}' for x in os.getloadavg())} "
              f"at the end; Python {platform.python_version()}.", "",
              "The predict thread keeps health answering in milliseconds while model code waits or runs Python "
              "(the interpreter hands the GIL to the event loop every 5 ms); a native call that holds the GIL for "
              "seconds still blocks everything in that worker process (the `gil` rows: health waits for the whole "
              "call): run more workers, or a model library that releases the GIL. The JSON parser is such a call "
              "(~0.1 s per MB here): bodies over `PYML_PARSE_PROCESS_BYTES` (256 KiB) are therefore parsed in a "
              "warm child process, and smaller ones, whose parse holds the GIL for at most ~25 ms, stay in the "
              "server process, so a small request pays no round trip."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=600)
    parser.add_argument("--write-readme", action="store_true")
    parser.add_argument("--smoke", action="store_true",
                        help="one slow predict (sleep, predict thread on) and 60 requests: checks that it runs")
    args = parser.parse_args(argv)
    if args.smoke:
        args.requests, args.write_readme = 60, False

    from conftest import write_example_package

    work = Path(tempfile.mkdtemp(prefix="pyml-bench-health-"))
    slow = slow_package(work / "slow")
    health = {}
    threads = (("on (default)", {}), ("off", {"PYML_PREDICT_THREAD": "0"}))
    for thread, env in threads[:1] if args.smoke else threads:
        server = Server(slow, env)
        try:
            for mode in ("sleep",) if args.smoke else ("sleep", "spin", "gil"):
                health[(mode, thread)] = health_during(server, mode)
                print(mode, thread, health[(mode, thread)], flush=True)
        finally:
            server.stop()

    example = write_example_package(work / "example")
    parse = {}
    places = (("child process (default)", {}), ("server process", {"PYML_PARSE_PROCESS_BYTES": "0"}))
    for where, env in places:
        server = Server(example, env)
        try:
            for size, rows in (("2 MB", 45_000),) if args.smoke else (("2 MB", 45_000), ("8 MB", 180_000)):
                parse[(size, where)] = health_during_parse(server, big_body(rows), 1 if args.smoke else 3)
                print(size, where, parse[(size, where)], flush=True)
        finally:
            server.stop()

    body = json.dumps({"dataframe_split": {"columns": ["x1", "x2", "city"], "data": [[0.5, -1.0, "paris"]]}}).encode()
    servers = {"default (predict thread, parse process)": Server(example),
               "PYML_PREDICT_THREAD=0": Server(example, {"PYML_PREDICT_THREAD": "0"}),
               "PYML_PARSE_PROCESS_BYTES=0": Server(example, {"PYML_PARSE_PROCESS_BYTES": "0"})}
    try:
        single = latency(servers, body, args.requests)
    finally:
        for server in servers.values():
            server.stop()
    table = render(health, parse, single, args.requests)
    print(table)
    if args.write_readme:
        write_section("Health during predictions", "bench/serving/bench_health.py", table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
