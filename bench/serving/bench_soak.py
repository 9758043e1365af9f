"""Soak: a deployed container under steady load mixing valid and invalid requests, watched for errors and growth.

    .venv/bin/python bench/serving/bench_soak.py --smoke            # a few seconds, to check the script
    .venv/bin/python bench/serving/bench_soak.py [--duration 600] [--concurrency 16] [--write-readme]

The example scikit-learn package (tests/conftest.py) is built into an image and deployed with ``deploy()``'s
defaults (memory and pids limits, read-only root, no capabilities) and a bearer token. ``--concurrency``
client threads, each on its own keep-alive connection, send requests drawn at random from a fixed mix:

* valid (must answer 200): ``dataframe_split`` of 1 row and of 20 rows, ``dataframe_records``, V2 ``infer``;
* invalid (must answer 4xx): malformed JSON, a value of the wrong type (422), a missing column, a wrong
  content type (415), an unknown route (404), no token (401), a foreign ``Host`` (400).

It counts answers by kind and status, 5xx answers to valid requests and connection errors (a refused, reset or
timed-out connection; the client reconnects and goes on). The server's memory is the resident set of every
process in the container (``docker top``), sampled every 5 s; its growth is the median of the last 10 % of
samples against the median of the first 10 % after the warm-up (the first 20 % of the run, at most 60 s).
Goals: zero 5xx for valid requests, zero connection errors, RSS growth under 5 %. The exit status is 1 when a
goal is missed. ``--write-readme`` replaces the "Soak" section of bench/README.md.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "tests"))
from readme import write_section  # noqa: E402

NAME = "bench-soak-" + os.urandom(4).hex()  # one per run: the cleanup removes only this run's container and image
TOKEN = "soak-" + os.urandom(16).hex()
COLUMNS = ["x1", "x2", "city"]


def rows(n: int, rng: random.Random) -> list[list]:
    return [[rng.gauss(0, 1), rng.gauss(0, 1), rng.choice(["paris", "lyon", "nice"])] for _ in range(n)]


def split(n: int, rng: random.Random) -> bytes:
    return json.dumps({"dataframe_split": {"columns": COLUMNS, "data": rows(n, rng)}}).encode()


def v2(rng: random.Random) -> bytes:
    (x1, x2, city), = rows(1, rng)
    return json.dumps({"inputs": [{"name": "x1", "datatype": "FP64", "shape": [1], "data": [x1]},
                                  {"name": "x2", "datatype": "FP64", "shape": [1], "data": [x2]},
                                  {"name": "city", "datatype": "BYTES", "shape": [1], "data": [city]}]}).encode()


JSON = "application/json"
# kind -> (weight, valid, method, path, build(rng) -> body, content type, extra headers)
MIX = {
    "split-1": (40, True, "POST", "/invocations", lambda r: split(1, r), JSON, {}),
    "split-20": (10, True, "POST", "/invocations", lambda r: split(20, r), JSON, {}),
    "records": (10, True, "POST", "/invocations",
                lambda r: json.dumps({"dataframe_records": [dict(zip(COLUMNS, row)) for row in rows(3, r)]}).encode(),
                JSON, {}),
    "v2": (10, True, "POST", "/v2/models/" + NAME + "/infer", v2, JSON, {}),
    "bad-json": (5, False, "POST", "/invocations", lambda r: b'{"dataframe_split": {', JSON, {}),
    "wrong-type": (5, False, "POST", "/invocations",
                   lambda r: json.dumps({"dataframe_split": {"columns": COLUMNS,
                                                             "data": [["x", 1.0, "nice"]]}}).encode(), JSON, {}),
    "missing-column": (5, False, "POST", "/invocations",
                       lambda r: json.dumps({"dataframe_records": [{"x1": 1, "city": "nice"}]}).encode(), JSON, {}),
    "content-type": (3, False, "POST", "/invocations", lambda r: b"x1,x2\n1,2", "application/xml", {}),
    "no-route": (3, False, "GET", "/nope", lambda r: None, None, {}),
    "no-token": (5, False, "POST", "/invocations", lambda r: split(1, r), JSON, {"Authorization": ""}),
    "foreign-host": (4, False, "POST", "/invocations", lambda r: split(1, r), JSON, {"Host": "rebinding.example"}),
}


class Totals:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.statuses: Counter = Counter()
        self.valid_5xx = 0
        self.invalid_not_4xx = 0
        self.connection_errors: Counter = Counter()
        self.errors: list[tuple[float, str, str, float]] = []  # (wall clock, request kind, exception, seconds waited)
        self.latencies: list[float] = []


def client_loop(port: int, seed: int, stop: threading.Event, totals: Totals) -> None:
    rng = random.Random(seed)
    kinds = list(MIX)
    weights = [MIX[k][0] for k in kinds]
    connection = None
    while not stop.is_set():
        kind = rng.choices(kinds, weights)[0]
        _, valid, method, path, build, content_type, extra = MIX[kind]
        headers = {"Authorization": f"Bearer {TOKEN}", **extra}
        if not headers["Authorization"]:
            del headers["Authorization"]
        if content_type:
            headers["Content-Type"] = content_type
        body = build(rng)
        started = time.perf_counter()
        try:
            if connection is None:
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            connection.request(method, path, body=body, headers=headers)
            response = connection.getresponse()
            response.read()
            status = response.status
            if response.getheader("connection", "").lower() == "close":
                connection.close()
                connection = None
        except (OSError, http.client.HTTPException) as exc:
            with totals.lock:
                totals.connection_errors[type(exc).__name__] += 1
                totals.errors.append((time.time(), kind, type(exc).__name__, time.perf_counter() - started))
            if connection is not None:
                connection.close()
            connection = None
            continue
        elapsed = time.perf_counter() - started
        with totals.lock:
            totals.statuses[(kind, status)] += 1
            if valid:
                totals.latencies.append(elapsed)
                totals.valid_5xx += status >= 500
            else:
                totals.invalid_not_4xx += not 400 <= status < 500
    if connection is not None:
        connection.close()


def container_rss(container) -> int:
    """Resident bytes of every process in the container (``docker top``, from the host's ps)."""
    top = container.top(ps_args="-o pid,rss")
    index = top["Titles"].index("RSS")
    return sum(int(p[index]) for p in top["Processes"]) * 1024


def deploy(package: Path):
    from pyml_jupyter.container_security import ContainerSettings
    from pyml_jupyter.deployments import run_deployment
    from pyml_jupyter.images.builder import build_image

    info = build_image(package, name=NAME, version="1", run_id="soak")
    return info.tag, run_deployment(info, name=NAME, version=1, settings=ContainerSettings.build(token=TOKEN),
                                    timeout=180)


def clean_up(tag: str, work: Path) -> None:
    """Remove this run's container, image tag and files (named for this run: nothing else is touched)."""
    import docker

    from pyml_jupyter.deployments import stop_deployment

    stop_deployment(NAME, "1")
    client = docker.from_env()
    try:  # every tag of this run's repository (the build tags the version and the version with its run id)
        for name in client.images.get(tag).tags:
            if name.startswith(tag.rsplit(":", 1)[0] + ":"):
                client.images.remove(name)
    except docker.errors.APIError as exc:  # already gone
        print(f"image {tag} left: {exc}", file=sys.stderr)
    shutil.rmtree(work, ignore_errors=True)


def soak(args) -> dict:
    import docker

    from conftest import write_example_package

    work = Path(tempfile.mkdtemp(prefix="pyml-soak-"))
    package = write_example_package(work / "package")
    tag, deployment = deploy(package)
    container = docker.from_env().containers.get(deployment.container_id)
    port = int(deployment.url.rsplit(":", 1)[1])
    totals, stop = Totals(), threading.Event()
    threads = [threading.Thread(target=client_loop, args=(port, i, stop, totals), daemon=True)
               for i in range(args.concurrency)]
    samples: list[tuple[float, int]] = []
    load_start = os.getloadavg()
    started = time.monotonic()
    try:
        for thread in threads:
            thread.start()
        while time.monotonic() - started < args.duration:
            try:
                samples.append((time.monotonic() - started, container_rss(container)))
            except docker.errors.NotFound:  # removed from outside (another client of the same engine)
                raise SystemExit(f"the container was removed from outside after {time.monotonic() - started:.0f} s "
                                 f"(another client of this Docker engine); rerun") from None
            time.sleep(min(5.0, max(0.5, args.duration / 20)))
        stop.set()
        for thread in threads:
            thread.join(timeout=60)
        elapsed = time.monotonic() - started
        samples.append((elapsed, container_rss(container)))
        limits = container.attrs["HostConfig"]
        oom = container.attrs["State"].get("OOMKilled")
    finally:
        if not args.keep:
            clean_up(tag, work)
    warm = min(60.0, args.duration * 0.2)
    after = [rss for t, rss in samples if t >= warm]
    tenth = max(1, len(after) // 10)
    base, end = statistics.median(after[:tenth]), statistics.median(after[-tenth:])
    latencies = sorted(totals.latencies)
    return {"duration": elapsed, "concurrency": args.concurrency, "statuses": totals.statuses,
            "requests": sum(totals.statuses.values()), "valid_5xx": totals.valid_5xx,
            "invalid_not_4xx": totals.invalid_not_4xx, "connection_errors": dict(totals.connection_errors),
            "rss_base": base, "rss_end": end, "rss_max": max(rss for _, rss in samples),
            "growth": (end - base) / base, "p50_ms": statistics.median(latencies) * 1e3 if latencies else 0,
            "p99_ms": latencies[int(len(latencies) * 0.99)] * 1e3 if latencies else 0,
            "load_start": load_start, "load_end": os.getloadavg(), "memory_limit": limits.get("Memory"),
            "pids_limit": limits.get("PidsLimit"), "oom": oom, "cpus": os.cpu_count(),
            "errors": [(time.strftime("%H:%M:%S", time.gmtime(t)), kind, error, waited)
                       for t, kind, error, waited in sorted(totals.errors)]}


def render(r: dict) -> str:
    by_kind: dict[str, Counter] = {}
    for (kind, status), n in r["statuses"].items():
        by_kind.setdefault(kind, Counter())[status] += n
    lines = ["", "", f"{r['duration']:.0f} s at concurrency {r['concurrency']} against one container "
             f"(`deploy()` defaults: memory limit {r['memory_limit'] // 1024 ** 2} MiB, pids limit {r['pids_limit']}, "
             f"read-only root, no capabilities; a bearer token), the example scikit-learn model; "
             f"{r['requests']} requests ({r['requests'] / r['duration']:.0f}/s).", "",
             "| request | valid | answers by status |", "|---|---|---|"]
    for kind, (_, valid, *_rest) in MIX.items():
        counts = ", ".join(f"{status}: {n}" for status, n in sorted(by_kind.get(kind, Counter()).items()))
        lines.append(f"| {kind} | {'yes' if valid else 'no'} | {counts or '-'} |")
    goals = [("5xx answers to valid requests", r["valid_5xx"], r["valid_5xx"] == 0),
             ("invalid requests not answered 4xx", r["invalid_not_4xx"], r["invalid_not_4xx"] == 0),
             ("connection errors", sum(r["connection_errors"].values()) or 0, not r["connection_errors"]),
             ("RSS growth after warm-up", f"{r['growth'] * 100:+.2f} % ({r['rss_base'] / 2**20:.0f} -> "
              f"{r['rss_end'] / 2**20:.0f} MiB; max {r['rss_max'] / 2**20:.0f} MiB)", r["growth"] < 0.05)]
    lines += ["", "| goal | result | met |", "|---|---|---|"]
    lines += [f"| {what} | {value} | {'yes' if ok else 'NO'} |" for what, value, ok in goals]
    lines += ["", f"Valid requests: p50 {r['p50_ms']:.1f} ms, p99 {r['p99_ms']:.1f} ms (client threads share the "
              f"machine with the server). Machine: {r['cpus']} CPUs, load average "
              f"{' '.join(f'{x:.1f}' for x in r['load_start'])} at the start and "
              f"{' '.join(f'{x:.1f}' for x in r['load_end'])} at the end (other work shared the machine)."]
    if r["errors"]:
        lines += ["", "| connection error at (UTC) | request | error | after s |", "|---|---|---|---:|"]
        lines += [f"| {at} | {kind} | {error} | {waited:.1f} |" for at, kind, error, waited in r["errors"]]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=600, help="seconds of load (default: 600)")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--smoke", action="store_true", help="a few seconds at concurrency 4")
    parser.add_argument("--keep", action="store_true", help="leave the container running")
    parser.add_argument("--write-readme", action="store_true")
    args = parser.parse_args(argv)
    if args.smoke:
        args.duration, args.concurrency = 6, 4
    result = soak(args)
    table = render(result)
    print(table)
    if args.write_readme and not args.smoke:
        write_section("Soak", "bench/serving/bench_soak.py", table)
    met = (result["valid_5xx"] == 0 and result["invalid_not_4xx"] == 0 and not result["connection_errors"]
           and result["growth"] < 0.05)
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
