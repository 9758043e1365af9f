"""Adversarial benchmark: hostile request bodies against a running server, each beside a normal body of its size.

A real server (``python -m pyml_jupyter.serving``, one worker, default limits) serves the test suite's example
package (columns x1, x2: float64, city: string). For each size (0.3, 1 and 2 MB; ``--smoke``: 0.3 MB) it sends
a normal ``dataframe_records`` body of that size, then each hostile body of the same size:

* ``records-unique-keys``: every record carries one extra key of its own (records x distinct keys, once);
* ``instances-unique-keys``: the same under ``instances``;
* ``record-wide``: one record with thousands of extra keys (20k at 0.3 MB);
* ``csv-wide``: a CSV header with 100k+ columns and one row;
* ``csv-rows-bomb``: a header, then ``,,\\n`` rows (millions of rows in a few bytes each);
* ``csv-quote-bomb``: one quoted field that never closes;
* ``deep-nesting``: ``[[[[...]]]]`` as a cell value, as deep as the size allows;
* ``huge-numbers``: records whose x1 is an integer of 4,000 digits;
* ``invalid-utf8``: a normal body with a 0xFF byte in its middle;
* ``v2-unknown-inputs``: a V2 request with thousands of inputs the model does not take.

It prints, per body, the answer's status, its time (least and median of 5) and the server's peak RSS while answering it
(``VmHWM`` after resetting it through ``/proc/PID/clear_refs``, summed over the server and its parse process), against the normal body and the idle server,
and the slowest ``/ping`` answered meanwhile (another client pings every 5 ms), then checks the normal body is still answered correctly. Goal (issue 9): every hostile body answered (4xx or
200) in at most 2x the normal body's time and with peak RSS under 2x the idle server's.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))
from readme import write_section  # noqa: E402  (bench/readme.py)
sys.path.insert(0, str(ROOT / "tests"))
PYTHON = sys.executable
MB = 1_000_000
ROW = {"x1": 0.25, "x2": -1.5, "city": "nice"}


# ------------------------------------------------------------------------------------------- bodies


def _fill(make_item, size: int, head: bytes, tail: bytes, sep: bytes = b",") -> bytes:
    """``head`` + items joined by ``sep`` + ``tail``, about ``size`` bytes."""
    items, total, i = [], len(head) + len(tail), 0
    while total < size:
        item = make_item(i)
        items.append(item)
        total += len(item) + len(sep)
        i += 1
    return head + sep.join(items) + tail


def normal_json(size: int) -> bytes:
    return _fill(lambda i: json.dumps({**ROW, "x1": i / 7}).encode(), size, b'{"dataframe_records": [', b"]}")


def normal_csv(size: int) -> bytes:
    return _fill(lambda i: f"{i / 7},-1.5,nice".encode(), size, b"x1,x2,city\n", b"\n", b"\n")


def hostile_bodies(size: int) -> dict[str, tuple[bytes, str]]:
    """name -> (body, content type)."""
    unique = lambda i: json.dumps({**ROW, f"k{i}": i}).encode()  # noqa: E731
    wide_keys = max(20_000, size // 15)
    wide = {**ROW, **{f"extra_key_{i}": i for i in range(wide_keys)}}
    columns = max(100_000, size // 6)
    header = ",".join(["x1", "x2", "city"] + [f"c{i}" for i in range(columns)])
    depth = size // 2 - 40
    inputs = _fill(lambda i: json.dumps({"name": f"in{i}", "shape": [1], "datatype": "FP64", "data": [1.0]}).encode(),
                   size, b'{"inputs": [', b"]}")
    normal = normal_json(size)
    return {
        "records-unique-keys": (_fill(unique, size, b'{"dataframe_records": [', b"]}"), "application/json"),
        "instances-unique-keys": (_fill(unique, size, b'{"instances": [', b"]}"), "application/json"),
        "record-wide": (json.dumps({"dataframe_records": [wide]}).encode(), "application/json"),
        "csv-wide": ((header + "\n" + ",".join(["1", "2", "a"] + ["0"] * columns) + "\n").encode(), "text/csv"),
        "csv-rows-bomb": (b"x1,x2,city\n" + b",,\n" * (size // 3), "text/csv"),
        "csv-quote-bomb": (b'x1,x2,city\n1,2,"' + b"a" * size, "text/csv"),
        "deep-nesting": (b'{"dataframe_records": [{"x1": 1, "x2": 2, "city": ' + b"[" * depth + b"]" * depth + b"}]}",
                         "application/json"),
        "huge-numbers": (_fill(lambda i: b'{"x1": ' + b"9" * 4000 + b', "x2": 1, "city": "a"}', size,
                               b'{"dataframe_records": [', b"]}"), "application/json"),
        "invalid-utf8": (normal[: len(normal) // 2] + b"\xff" + normal[len(normal) // 2 + 1:], "application/json"),
        "v2-unknown-inputs": (inputs, "application/json"),
    }


# ------------------------------------------------------------------------------------------- server


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """``python -m pyml_jupyter.serving`` with one worker: the process that parses is the one measured."""

    def __init__(self, package: Path) -> None:
        self.port = free_port()
        self.log = tempfile.TemporaryFile(mode="w+")
        env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
        self.process = subprocess.Popen(
            [PYTHON, "-m", "pyml_jupyter.serving", str(package), "--port", str(self.port), "--workers", "1",
             "--model-name", "example", "--log-level", "warning"],
            stdout=self.log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self.log.seek(0)
                raise RuntimeError(f"the server exited: {self.log.read()[-2000:]}")
            try:
                if self.request("GET", "/ping")[0] == 200:
                    return
            except OSError:
                time.sleep(0.2)
        raise RuntimeError("the server did not become ready")

    def request(self, method: str, path: str, body: bytes | None = None,
                content_type: str = "application/json") -> tuple[int, bytes, float]:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=300)
        started = time.perf_counter()
        connection.request(method, path, body=body, headers={"Content-Type": content_type})
        response = connection.getresponse()
        payload = response.read()
        seconds = time.perf_counter() - started
        connection.close()
        return response.status, payload, seconds

    def pids(self) -> list[int]:
        """The server process and its children (the parse process)."""
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children").read_text().split()
        return [self.process.pid, *map(int, children)]

    def _status(self, key: str) -> int:
        """``key`` of /proc/PID/status summed over the server's processes."""
        total = 0
        for pid in self.pids():
            with contextlib.suppress(FileNotFoundError):
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith(key + ":"):
                        total += int(line.split()[1]) * 1024
        return total

    def rss(self) -> int:
        return self._status("VmRSS")

    def reset_peak(self) -> None:
        for pid in self.pids():
            with contextlib.suppress(FileNotFoundError):
                Path(f"/proc/{pid}/clear_refs").write_text("5")  # resets VmHWM to the current RSS

    def peak(self) -> int:
        """The sum of the processes' own peaks (at least their peak together)."""
        return self._status("VmHWM")

    def stop(self) -> None:
        os.killpg(self.process.pid, signal.SIGTERM)
        self.process.wait(timeout=30)


class Pinger:
    """``GET /ping`` in a loop on its own connection while a request is answered: the slowest answer."""

    def __init__(self, server: Server) -> None:
        self.server, self.slowest, self.running = server, 0.0, True
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", self.server.port, timeout=60)
        while self.running:
            started = time.perf_counter()
            connection.request("GET", "/ping")
            connection.getresponse().read()
            self.slowest = max(self.slowest, time.perf_counter() - started)
            time.sleep(0.005)
        connection.close()

    def stop(self) -> float:
        self.running = False
        self.thread.join()
        return self.slowest


def measure(server: Server, path: str, body: bytes, content_type: str, repeat: int) -> dict:
    times, peaks, pings, status, answer = [], [], [], 0, b""
    for _ in range(repeat):
        server.reset_peak()
        pinger = Pinger(server)
        status, answer, seconds = server.request("POST", path, body, content_type)
        pings.append(pinger.stop())
        times.append(seconds)
        peaks.append(server.peak())
    # the least time: the run least disturbed by the shared machine's other work (the median is shown too)
    return {"status": status, "seconds": min(times), "median": statistics.median(times), "peak": max(peaks),
            "answer": answer, "ping": max(pings)}


# ------------------------------------------------------------------------------------------- run


def run(sizes: list[int], repeat: int) -> tuple[list[dict], dict]:
    from conftest import write_example_package

    load_start = os.getloadavg()
    work = Path(tempfile.mkdtemp(prefix="pyml-adversarial-"))
    package = write_example_package(work / "package")
    server = Server(package)
    rows: list[dict] = []
    try:
        for size in sizes:  # warm up: the parse thread and the allocator's arenas exist before measuring
            server.request("POST", "/invocations", normal_json(size))
        idle = server.rss()
        for size in sizes:
            normal = measure(server, "/invocations", normal_json(size), "application/json", repeat)
            assert normal["status"] == 200, normal["answer"][:300]
            csv = measure(server, "/invocations", normal_csv(size), "text/csv", repeat)
            rows.append({"size": size, "name": "normal (records)", **normal, "ratio": 1.0})
            rows.append({"size": size, "name": "normal (CSV)", **csv, "ratio": csv["seconds"] / normal["seconds"]})
            for name, (body, content_type) in hostile_bodies(size).items():
                path = "/v2/models/example/infer" if name.startswith("v2") else "/invocations"
                result = measure(server, path, body, content_type, repeat)
                rows.append({"size": size, "name": name, **result, "bytes": len(body),
                             "ratio": result["seconds"] / normal["seconds"]})
                print(f"{size / MB:.1f} MB {name:24s} {result['status']} {result['seconds'] * 1e3:8.1f} ms "
                      f"{rows[-1]['ratio']:5.2f}x  peak {result['peak'] / 2**20:6.1f} MiB "
                      f"({result['peak'] / idle:4.2f}x idle)  slowest /ping {result['ping'] * 1e3:.1f} ms", flush=True)
        check = server.request("POST", "/invocations", json.dumps({"dataframe_records": [ROW]}).encode())
        assert check[0] == 200 and len(json.loads(check[1])["predictions"]) == 1, check
    finally:
        server.stop()
    for row in rows:
        row["rss_ratio"] = row["peak"] / idle
    return rows, {"idle": idle, "repeat": repeat, "load_start": load_start}


def report(rows: list[dict], meta: dict) -> str:
    load, start = os.getloadavg(), meta["load_start"]
    lines = [
        "", "",
        f"Machine: {os.cpu_count()} CPUs ({platform.machine()}, load average {start[0]:.1f}/{start[1]:.1f}/"
        f"{start[2]:.1f} at the start and {load[0]:.1f}/{load[1]:.1f}/{load[2]:.1f} at the end of the run: other "
        f"work shared the machine), Python {platform.python_version()}. One server process "
        f"(`python -m pyml_jupyter.serving`, 1 worker, default limits) serving the test suite's example package; "
        f"idle RSS {meta['idle'] / 2**20:.0f} MiB (the server process and its parse process). Each body sent "
        f"{meta['repeat']} times: the least time (the run least disturbed by the machine's other work) and the "
        f"median; peak RSS is the sum of both processes' `VmHWM`, reset before each request. Time ratio: against the normal `dataframe_records` body "
        f"of the same size.",
        "",
        "| size | body | status | ms | median ms | time vs normal | peak RSS MiB | peak vs idle | "
        "slowest /ping meanwhile ms |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        lines.append(f"| {row['size'] / MB:.1f} MB | {row['name']} | {row['status']} | {row['seconds'] * 1e3:.1f} | "
                     f"{row['median'] * 1e3:.1f} | "
                     f"{row['ratio']:.2f}x | {row['peak'] / 2**20:.0f} | {row['rss_ratio']:.2f}x | "
                     f"{row['ping'] * 1e3:.1f} |")
    hostile = [r for r in rows if not r["name"].startswith("normal")]
    worst_time = max(hostile, key=lambda r: r["ratio"])
    worst_rss = max(hostile, key=lambda r: r["rss_ratio"])
    answered = all(r["status"] < 500 for r in hostile)
    slowest_ping = max(rows, key=lambda r: r["ping"])
    lines += ["", f"A client pinged `/ping` (every 5 ms, its own connection) during each request: the slowest "
                  f"answer was {slowest_ping['ping'] * 1e3:.1f} ms ({slowest_ping['name']} at "
                  f"{slowest_ping['size'] / MB:.1f} MB). Bodies over 256 KiB (`PYML_PARSE_PROCESS_BYTES`) are "
                  f"parsed in the parse process, a warm child process, since the standard library's JSON parser "
                  f"holds the GIL while it runs; smaller ones in the server process, where /ping can wait for the "
                  f"C part of one parse (~0.1 s per MB).", f"Every hostile body answered without a 5xx: {'yes' if answered else 'NO'}. Slowest against "
                  f"the normal body: {worst_time['name']} at {worst_time['size'] / MB:.1f} MB, "
                  f"{worst_time['ratio']:.2f}x (goal: at most 2x). Largest peak RSS: {worst_rss['name']} at "
                  f"{worst_rss['size'] / MB:.1f} MB, {worst_rss['rss_ratio']:.2f}x idle (goal: under 2x). The "
                  f"normal body was answered correctly afterwards."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="0.3 MB only, one repetition")
    parser.add_argument("--write-readme", action="store_true", help="rewrite the Adversarial section of README")
    args = parser.parse_args(argv)
    sizes = [300_000] if args.smoke else [300_000, 1_000_000, 2_000_000]
    rows, meta = run(sizes, 1 if args.smoke else 5)
    text = report(rows, meta)
    print(text)
    if args.write_readme:
        write_section("Adversarial requests", "bench/adversarial/bench_adversarial.py", text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
