"""Batching benchmark: row-counting adaptive batching and gRPC against ``mlflow models serve``, same model, same run.

    .venv/bin/python bench/serving/bench_batching.py [--duration 5] [--repeat 2] [--write-readme]
    .venv/bin/python bench/serving/bench_batching.py --smoke      # a second of load per cell: does it still run?

The model is example_notebooks/02's house price model (a scikit-learn GradientBoostingRegressor behind a pandas
feature step, bench/serving/house_price.py), put through the real contract check, which proves its batch
invariance and so lets the server batch it. Servers (started here, side by side, taking turns; each cell keeps a
server's best of ``--repeat`` runs so that bursts of other work on a shared machine hit all alike):

* ours: ``python -m pyml_jupyter.serving`` with batching (the default), with batching off
  (``PYML_MAX_BATCH_ROWS=0``), and predicting on the event loop (``PYML_PREDICT_THREAD=0``: no thread hop);
* the peer: ``mlflow models serve --env-manager local`` of the same package as a pyfunc model;
* with 2 workers: ours (batching) and ``mlflow models serve -w 2``.

Load: wrk on loopback (``POST /invocations``, keep-alive) with 1-row requests at c=1 and c=16, and a mix of
1-row and 100-row requests at c=16 (rows/s counted); gRPC ModelInfer (1 row, raw contents) at c=16 over TCP and
over a Unix socket, measured with a Python asyncio client in its own process (4 channels), and HTTP with the
same client (16 connections) so that the two protocols are compared with one load generator. Before measuring, each server's answers are checked
against the model's own predictions. It prints the table and the goals of the batching issue with the ratios
measured; ``--write-readme`` replaces the "Batching and gRPC" section of bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path[:0] = [str(HERE), str(ROOT / "bench")]
from bench_serving import PYTHON, WRK, Server, _ms, free_port, save_pyfunc  # noqa: E402
from readme import write_section  # noqa: E402

MODEL_NAME = "house_price"
GRPC_CHANNELS = 4  # connections the gRPC load client spreads its concurrent calls over


# ------------------------------------------------------------------------------------------ the model


def make_package(work: Path) -> Path:
    """The house price model, checked by the real contract check (which records its batch invariance)."""
    import house_price as hp

    from pyml_jupyter import check

    report = check(hp.HousePrice, hp.houses(8), {"gbr": hp.trained()}, namespace=vars(hp))
    if not report.ok:
        raise RuntimeError(f"the benchmark's model fails its contract check: {report.summary()}")
    package = Path(shutil.copytree(report.package_dir, work / "package"))
    if json.loads((package / "pyml.json").read_text()).get("batch_invariant") is not True:
        raise RuntimeError("the contract check did not record batch invariance: the server would not batch")
    return package


def frame(n: int, seed: int):
    import house_price as hp

    return hp.houses(n, seed=seed)


def http_body(n: int, seed: int = 3) -> bytes:
    f = frame(n, seed)
    return json.dumps({"dataframe_split": {"columns": list(f.columns),
                                           "data": f.astype(object).values.tolist()}}).encode()


def grpc_body(n: int, seed: int = 3) -> bytes:
    """A serialized ModelInferRequest with raw contents, as tritonclient sends them."""
    import numpy as np

    from pyml_jupyter.serving.grpc_server import encode_tensor
    from pyml_jupyter.serving.proto import grpc_predict_v2_pb2 as pb

    f = frame(n, seed)
    request = pb.ModelInferRequest(model_name=MODEL_NAME)
    for column, datatype in (("rooms", "INT64"), ("area_m2", "FP64"), ("district", "BYTES")):
        request.inputs.add(name=column, datatype=datatype, shape=[n])
        values = f[column].tolist() if datatype == "BYTES" else np.asarray(f[column]).tolist()
        request.raw_input_contents.append(encode_tensor({"datatype": datatype, "data": values}))
    return request.SerializeToString()


# ------------------------------------------------------------------------------------------- load


def wrk(url: str, bodies: list[bytes], connections: int, duration: float, work: Path) -> dict:
    """wrk at ``connections`` on ``POST url/invocations``, cycling through ``bodies`` request by request."""
    script = work / f"mix-{len(bodies)}-{sum(map(len, bodies))}.lua"
    items = ",\n".join(f"[==[{b.decode()}]==]" for b in bodies)
    script.write_text(f'local bodies = {{\n{items}\n}}\nlocal i = 0\n'
                      'local headers = {["Content-Type"] = "application/json"}\n'
                      'request = function()\n  i = i % #bodies + 1\n'
                      '  return wrk.format("POST", "/invocations", headers, bodies[i])\nend\n')
    out = subprocess.run([WRK, f"-t{min(connections, 2)}", f"-c{connections}", f"-d{max(1, round(duration))}s",
                          "--latency", "-s", str(script), url + "/invocations"],
                         capture_output=True, text=True, check=True).stdout
    if "Non-2xx" in out or "Socket errors" in out:
        raise RuntimeError(f"wrk saw errors against {url}:\n{out}")
    import re

    return {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
            "p50": _ms(re.search(r"^\s+50%\s+(\S+)", out, re.M).group(1)),
            "p99": _ms(re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1))}


async def _load(send, concurrency: int, duration: float) -> dict:
    latencies: list[float] = []
    end = time.perf_counter() + duration

    async def worker():
        client = await send()
        while time.perf_counter() < end:
            started = time.perf_counter()
            await client()
            latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    latencies.sort()
    return {"rps": len(latencies) / elapsed, "p50": latencies[len(latencies) // 2] * 1e3,
            "p99": latencies[int(len(latencies) * 0.99)] * 1e3}


async def _grpc_load(target: str, body: bytes, concurrency: int, duration: float) -> dict:
    import grpc

    # Several channels, each its own connection (a local subchannel pool), so that one HTTP/2 connection's
    # ordering is not the limit; the concurrent calls are spread over them.
    channels = [grpc.aio.insecure_channel(target, options=[("grpc.use_local_subchannel_pool", 1)])
                for _ in range(min(concurrency, GRPC_CHANNELS))]
    calls = [channel.unary_unary("/inference.GRPCInferenceService/ModelInfer") for channel in channels]  # bytes
    for call in calls:
        await call(body)
    made = []

    async def client():
        call = calls[len(made) % len(calls)]
        made.append(call)
        return lambda: call(body)

    try:
        return await _load(client, concurrency, duration)
    finally:
        for channel in channels:
            await channel.close()


async def _http_load(port: int, body: bytes, concurrency: int, duration: float) -> dict:
    request = (f"POST /invocations HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
               f"Content-Length: {len(body)}\r\n\r\n").encode() + body

    async def client():
        reader, writer = await asyncio.open_connection("127.0.0.1", port)

        async def one():
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            if not head.startswith(b"HTTP/1.1 200"):
                raise RuntimeError(head.decode(errors="replace"))
            length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
            await reader.readexactly(length)
        return one

    return await _load(client, concurrency, duration)


def python_load(kind: str, target: str, body: bytes, concurrency: int, duration: float, work: Path) -> dict:
    """The Python client in a process of its own (``--load``), as wrk would be."""
    path = work / f"body-{kind}-{len(body)}"
    path.write_bytes(body)
    out = subprocess.run([PYTHON, __file__, "--load", kind, target, str(path), str(concurrency), str(duration)],
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out)


# ---------------------------------------------------------------------------------------- servers


def ours(package: Path, name: str, workers: int = 1, env: dict | None = None, grpc: bool = False):
    def start(port: int) -> Server:
        command = [PYTHON, "-m", "pyml_jupyter.serving", str(package), "--port", str(port), "--workers", str(workers),
                   "--model-name", MODEL_NAME, "--log-level", "warning"]
        server = None
        if grpc:
            grpc_port, uds = free_port(), str(Path(tempfile.gettempdir()) / f"pyml-bench-{port}.sock")
            command += ["--grpc-port", str(grpc_port), "--grpc-uds", uds]
        server = Server(name, command, port, env=env)
        server.workers = workers
        if grpc:
            server.grpc, server.uds = f"127.0.0.1:{grpc_port}", f"unix:{uds}"
        return server
    return start


def mlflow(model: Path, name: str, workers: int = 1):
    def start(port: int) -> Server:
        server = Server(name, [PYTHON, "-m", "mlflow", "models", "serve", "-m", str(model), "--env-manager", "local",
                               "--port", str(port), "--workers", str(workers)], port)
        server.workers = workers
        return server
    return start


def check_answers(server: Server, expected: dict[int, list[float]]) -> None:
    for n, prices in expected.items():
        got = [p["price"] for p in server.post(http_body(n))["predictions"]]
        if len(got) != len(prices) or any(abs(a - b) > 1e-6 * max(1.0, abs(b)) for a, b in zip(got, prices)):
            raise RuntimeError(f"{server.name} answers differently for {n} rows")


# ------------------------------------------------------------------------------------------- runs


CELLS = [  # (label, rows per request, concurrency, servers, how)
    ("1 row, c=1", [1], 1, ["ours", "ours, batching off", "ours, predict on the event loop", "mlflow"], "wrk"),
    ("1 row, c=16", [1], 16, ["ours", "ours, batching off", "mlflow"], "wrk"),
    ("1 and 100 rows, c=16", [1, 100], 16, ["ours", "ours, batching off", "mlflow"], "wrk"),
    ("2 workers, 1 row, c=16", [1], 16, ["ours, 2 workers", "mlflow, 2 workers"], "wrk"),
    ("gRPC vs HTTP, 1 row, c=16", [1], 16, ["ours"], "python"),
]
SMOKE_CELLS = [("1 row, c=16", [1], 16, ["ours"], "wrk"), ("gRPC vs HTTP, 1 row, c=16", [1], 16, ["ours"], "python")]


def server_cpu_seconds(server: Server) -> float:
    """CPU time used so far by the server's processes (its session: uvicorn and its workers)."""
    total, tick = 0, os.sysconf("SC_CLK_TCK")
    for entry in os.listdir("/proc"):
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if fields[3] == str(server.process.pid):  # the session id: the server was started in a session of its own
            total += int(fields[11]) + int(fields[12])
    return total / tick


def batch_counts(server: Server) -> tuple[float, float]:
    """(requests predicted, predict calls) so far, from the server's /metrics."""
    import re
    import urllib.request

    with urllib.request.urlopen(server.url + "/metrics", timeout=10) as response:
        text = response.read().decode()
    return tuple(float(re.search(rf"^pyml_batch_requests_{key} (\S+)", text, re.M).group(1))
                 for key in ("sum", "count"))


def observed(server: Server, load) -> dict:
    """``load()``'s result with the server's requests per predict call and CPU ms per request during it."""
    cpu, (requests, calls) = server_cpu_seconds(server), batch_counts(server)
    result = load()
    cpu, (requests2, calls2) = server_cpu_seconds(server) - cpu, batch_counts(server)
    return {**result, "per_predict": (requests2 - requests) / max(1.0, calls2 - calls),
            "cpu_ms": 1e3 * cpu / max(1.0, requests2 - requests)}


def measure(cell, servers: dict, args, work: Path) -> list[dict]:
    label, sizes, concurrency, names, how = cell
    best: dict[str, dict] = {}
    mean_rows = sum(sizes) / len(sizes)
    for _ in range(args.repeat):
        for name in names:
            server = servers[name]
            if how == "wrk":
                runs = {name: wrk(server.url, [http_body(n) for n in sizes], concurrency, args.duration, work)}
            else:
                body, port = grpc_body(1), server.port
                runs = {"ours, gRPC over TCP": observed(server, lambda: python_load(
                            "grpc", server.grpc, body, concurrency, args.duration, work)),
                        "ours, gRPC over a Unix socket": observed(server, lambda: python_load(
                            "grpc", server.uds, body, concurrency, args.duration, work)),
                        "ours, HTTP (same Python client)": observed(server, lambda: python_load(
                            "http", str(port), http_body(1), concurrency, args.duration, work))}
            for key, r in runs.items():
                if key not in best or r["rps"] > best[key]["rps"]:
                    best[key] = r
    return [{"cell": label, "server": key, "workers": servers[names[0]].workers if how != "wrk" else
             servers[key].workers, "rows": "/".join(map(str, sizes)), "concurrency": concurrency, **r,
             "rows_per_s": r["rps"] * mean_rows} for key, r in best.items()]


def selected(cells: list, labels: list[str] | None) -> list:
    return [c for c in cells if not labels or any(c[0].startswith(label) for label in labels)]


def run(args, package: Path, mlflow_model: Path | None, work: Path) -> list[dict]:
    starters = {"ours": ours(package, "ours", grpc=True)}
    if not args.smoke:
        wanted = {name for cell in selected(CELLS, args.cells) for name in cell[3]}
        starters.update({
            "ours, batching off": ours(package, "ours, batching off", env={"PYML_MAX_BATCH_ROWS": "0"}),
            "ours, predict on the event loop": ours(package, "ours, predict on the event loop",
                                                    env={"PYML_PREDICT_THREAD": "0"}),
            "ours, 2 workers": ours(package, "ours, 2 workers", workers=2),
            "mlflow": mlflow(mlflow_model, "mlflow"),
            "mlflow, 2 workers": mlflow(mlflow_model, "mlflow, 2 workers", workers=2),
        })
        starters = {name: start for name, start in starters.items() if name == "ours" or name in wanted}
    from pyml_jupyter.serving.loader import load_package

    model = load_package(package)
    expected = {n: model.predict(frame(n, 3))["price"].tolist() for n in (1, 100)}
    servers = {name: start(free_port()) for name, start in starters.items()}
    results = []
    try:
        for server in servers.values():
            server.wait_ready()
            check_answers(server, expected)
        for cell in (SMOKE_CELLS if args.smoke else selected(CELLS, args.cells)):
            results += measure(cell, servers, args, work)
            print(f"measured {cell[0]}", flush=True)
    finally:
        for server in servers.values():
            server.stop()
    return results


# ---------------------------------------------------------------------------------------- report


def find(results, cell, server) -> dict | None:
    return next((r for r in results if r["cell"] == cell and r["server"] == server), None)


def goals(results) -> list[tuple[str, str, str]]:
    """(goal, measured, met?) for each goal of the batching issue that this run measured."""
    def ratio(cell, a, b, key="rps"):
        x, y = find(results, cell, a), find(results, cell, b)
        return None if x is None or y is None else x[key] / y[key]

    out = []

    def add(goal, value, target, fmt="{:.1f}x"):
        if value is not None:
            out.append((goal, fmt.format(value), "met" if value >= target else "NOT met"))

    add("1 worker, 1 row, c=16: >= 8x mlflow req/s", ratio("1 row, c=16", "ours", "mlflow"), 8)
    add("1 worker, 1 row, c=16: >= 4x ours with batching off", ratio("1 row, c=16", "ours", "ours, batching off"), 4)
    add("1 worker, c=1: >= 2.5x mlflow req/s", ratio("1 row, c=1", "ours", "mlflow"), 2.5)
    on, off = find(results, "1 row, c=1", "ours"), find(results, "1 row, c=1", "ours, batching off")
    if on and off:
        extra = on["p50"] - off["p50"]
        out.append(("1 worker, c=1: p50 at most 0.1 ms above batching off", f"{extra:+.2f} ms",
                    "met" if extra <= 0.1 else "NOT met"))
    inline = find(results, "1 row, c=1", "ours, predict on the event loop")
    if on and inline:
        out.append(("(measured) the predict thread's hop at c=1, p50", f"{on['p50'] - inline['p50']:+.2f} ms", "-"))
    add("2 workers, c=16: >= 8x mlflow -w 2", ratio("2 workers, 1 row, c=16", "ours, 2 workers", "mlflow, 2 workers"), 8)
    add("mixed 1 and 100 rows, c=16: rows/s >= 5x mlflow",
        ratio("1 and 100 rows, c=16", "ours", "mlflow", "rows_per_s"), 5)
    cell = "gRPC vs HTTP, 1 row, c=16"
    add("gRPC ModelInfer, 1 row, c=16: >= our HTTP (same client)",
        ratio(cell, "ours, gRPC over TCP", "ours, HTTP (same Python client)"), 1, "{:.2f}x")
    add("gRPC over a Unix socket >= over TCP", ratio(cell, "ours, gRPC over a Unix socket", "ours, gRPC over TCP"), 1,
        "{:.2f}x")
    return out


def render(results, args, load: tuple[str, str]) -> str:
    import pandas
    import sklearn

    lines = [f"Machine: {os.cpu_count()} CPUs, load average {load[0]} before and {load[1]} after the run "
             f"(`uptime`); best of {args.repeat} interleaved {args.duration:g} s runs per cell. Model: "
             f"example_notebooks/02's house price model (GradientBoostingRegressor behind a pandas feature step, "
             f"scikit-learn {sklearn.__version__}, pandas {pandas.__version__}), batch invariance proven by the "
             "contract check. HTTP load: wrk on loopback, keep-alive; gRPC and the HTTP row next to it: one "
             "Python asyncio client process (4 gRPC channels; 16 HTTP connections). Peer: `mlflow models serve --env-manager local` of the same package.",
             "", "| cell | server | workers | rows/request | c | req/s | rows/s | p50 ms | p99 ms |",
             "|---|---|---:|---|---:|---:|---:|---:|---:|"]
    for r in results:
        lines.append(f"| {r['cell']} | {r['server']} | {r['workers']} | {r['rows']} | {r['concurrency']} | "
                     f"{r['rps']:.0f} | {r['rows_per_s']:.0f} | {r['p50']:.2f} | {r['p99']:.2f} |")
    seen = [r for r in results if "per_predict" in r]
    if seen:
        lines += ["", "Inside the server during those runs (" + "; ".join(
            f"{r['server']}: {r['per_predict']:.1f} requests per predict call, {r['cpu_ms']:.2f} ms of server CPU "
            "per request" for r in seen) + ")."]
    lines += ["", "| goal (batching issue) | measured | |", "|---|---:|---|"]
    lines += [f"| {g} | {v} | {m} |" for g, v, m in goals(results)]
    return "\n".join(lines)


def uptime_load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=5, help="seconds per load run")
    parser.add_argument("--repeat", type=int, default=2, help="runs per cell and server; the best one counts")
    parser.add_argument("--smoke", action="store_true", help="ours only, one 1 s run per cell: checks that it runs")
    parser.add_argument("--write-readme", action="store_true", help="update bench/README.md's section")
    parser.add_argument("--cells", nargs="+", metavar="LABEL", help="run only the cells whose label starts so "
                        "(e.g. '1 row, c=1'); not with --write-readme")
    parser.add_argument("--load", nargs=5, metavar=("KIND", "TARGET", "BODY", "C", "SECONDS"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.load:  # the Python load generator, in its own process
        kind, target, body, concurrency, seconds = args.load
        body_bytes, c, d = Path(body).read_bytes(), int(concurrency), float(seconds)
        load = _grpc_load(target, body_bytes, c, d) if kind == "grpc" else _http_load(int(target), body_bytes, c, d)
        print(json.dumps(asyncio.run(load)))
        return 0
    if args.smoke:
        args.duration, args.repeat = 1, 1
    if args.cells and args.write_readme:
        parser.error("--write-readme records every cell: drop --cells")
    work = Path(tempfile.mkdtemp(prefix="pyml-bench-batching-"))
    try:
        package = make_package(work)
        mlflow_model = None if args.smoke else save_pyfunc(package, work / "mlflow_model" / "model")
        before = uptime_load()
        results = run(args, package, mlflow_model, work)
        table = render(results, args, (before, uptime_load()))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print()
    print(table)
    if args.write_readme and not args.smoke:
        write_section("Batching and gRPC", "bench/serving/bench_batching.py", "\n\n" + table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
