"""Serving benchmark: our runtime against ``mlflow models serve`` on the same model, with wrk on loopback.

    .venv/bin/python bench/serving/bench_serving.py [--duration 5] [--workers 1 2] [--write-readme]

For each server (``python -m pyml_jupyter.serving`` and ``mlflow models serve --env-manager local`` of the same
package logged as an MLflow pyfunc model, as ``pyml_jupyter.tracking`` logs it) and each worker count, it checks
both answer the same predictions, then runs wrk (``POST /invocations``, keep-alive) with 1-row and 100-row
``dataframe_split`` payloads at concurrency 1 and 16, and reports requests/s, p50 and p99. The servers of one
worker count run side by side and take turns, and each keeps its best of ``--repeat`` runs, so that bursts of
other work on a shared machine do not favour one of them. The floor is the
same request handled in-process: ``load_package(p).predict(df)`` alone, and the framework-free
``scoring.invocations`` (parse, validate, predict, serialize) without HTTP.

Everything runs on this machine: the load generator shares its cores with the server, so absolute numbers are
pessimistic; the ratios are the point. ``--write-readme`` replaces the "Serving" section of bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))
from readme import write_section  # noqa: E402  (bench/readme.py)
sys.path.insert(0, str(ROOT / "tests"))
PYTHON = sys.executable
WRK = shutil.which("wrk") or "/usr/bin/wrk"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def payload(n: int) -> bytes:
    from conftest import example_frame

    frame = example_frame(n, seed=3)
    return json.dumps({"dataframe_split": {"columns": list(frame.columns),
                                           "data": frame.astype(object).values.tolist()}}).encode()


def save_pyfunc(package: Path, out: Path) -> Path:
    """The package as an MLflow pyfunc model, the way pyml_jupyter.tracking logs it (without a tracking store)."""
    import mlflow.pyfunc
    from mlflow.models import infer_signature

    from pyml_jupyter.serving.loader import load_package

    code = out.parent / "code" / "pyml_jupyter"
    shutil.copytree(ROOT / "pyml_jupyter" / "serving", code / "serving", ignore=shutil.ignore_patterns("__pycache__"))
    model = load_package(package)
    sample = model.info.read_sample()
    mlflow.pyfunc.save_model(
        str(out), loader_module="pyml_jupyter.serving.pyfunc", data_path=str(package), code_paths=[str(code)],
        signature=infer_signature(sample, model.predict(sample)), input_example=sample,
        pip_requirements=[line for line in (package / "requirements.txt").read_text().splitlines() if line],
    )
    return out


class Server:
    def __init__(self, name: str, command: list[str], port: int, env: dict | None = None) -> None:
        self.name, self.port = name, port
        self.log = tempfile.TemporaryFile(mode="w+")
        # Its own session, so the whole tree (uvicorn's workers included) stops with one killpg on its pid.
        # mlflow runs `uvicorn` by name: the interpreter's bin folder goes first on PATH.
        path = f"{Path(PYTHON).parent}{os.pathsep}{os.environ.get('PATH', '')}"
        self.process = subprocess.Popen(command, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True,
                                        env={**os.environ, "PATH": path, **(env or {})}, cwd=tempfile.gettempdir())
        self.url = f"http://127.0.0.1:{port}"

    def wait_ready(self, timeout: float = 180) -> float:
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            if self.process.poll() is not None:
                self.log.seek(0)
                raise RuntimeError(f"{self.name} exited: {self.log.read()[-3000:]}")
            try:
                with urllib.request.urlopen(self.url + "/ping", timeout=2) as r:
                    if r.status == 200:
                        return time.monotonic() - started
            except OSError:
                time.sleep(0.2)
        raise RuntimeError(f"{self.name} did not become ready in {timeout} s")

    def post(self, body: bytes) -> dict:
        request = urllib.request.Request(self.url + "/invocations", data=body,
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as r:
            return json.loads(r.read())

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}


def _ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", text)
    if match is None:
        raise ValueError(f"cannot read wrk's latency {text!r}")
    return float(match.group(1)) * _UNITS[match.group(2)]


def wrk(url: str, body: bytes, connections: int, duration: int, script_dir: Path) -> dict:
    script = script_dir / f"post-{len(body)}.lua"
    script.write_text('wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
                      f"wrk.body = [==[{body.decode()}]==]\n")
    threads = min(connections, 2)
    out = subprocess.run([WRK, f"-t{threads}", f"-c{connections}", f"-d{duration}s", "--latency", "-s", str(script),
                          url + "/invocations"], capture_output=True, text=True, check=True).stdout
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if errors or "Socket errors" in out:
        raise RuntimeError(f"wrk saw errors against {url}:\n{out}")
    try:
        return {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
                "p50": _ms(re.search(r"^\s+50%\s+(\S+)", out, re.M).group(1)),
                "p99": _ms(re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1))}
    except (AttributeError, ValueError) as exc:
        raise RuntimeError(f"cannot read wrk's output ({exc}):\n{out}") from None


def in_process(package: Path, bodies: dict[int, bytes], mlflow_model: Path | None) -> dict:
    import pandas as pd

    from pyml_jupyter.serving import scoring
    from pyml_jupyter.serving.loader import load_package

    model = load_package(package)
    out = {}
    for rows, body in bodies.items():
        split = json.loads(body)["dataframe_split"]
        frame = model.enforce(pd.DataFrame(split["data"], columns=split["columns"]))

        def median_ms(fn, n=300):
            for _ in range(20):
                fn()
            times = []
            for _ in range(n):
                t = time.perf_counter()
                fn()
                times.append(time.perf_counter() - t)
            return statistics.median(times) * 1e3

        timings: dict[str, float] = {}
        phases: dict[str, list[float]] = {}

        def full():
            scoring.invocations(model, body, "application/json", timings)
            for k, v in timings.items():
                phases.setdefault(k, []).append(v)

        if mlflow_model is not None:  # what `mlflow models serve` calls per request, without HTTP
            import mlflow.pyfunc

            pyfunc = mlflow.pyfunc.load_model(str(mlflow_model))
            raw = pd.DataFrame(split["data"], columns=split["columns"])
            mlflow_ms = median_ms(lambda: pyfunc.predict(raw))
        else:
            mlflow_ms = float("nan")
        out[rows] = {"predict": median_ms(lambda: model.predict_enforced(frame)), "invocations": median_ms(full),
                     "mlflow": mlflow_ms,
                     "phases": {k: statistics.median(v) * 1e3 for k, v in phases.items()}}
    return out


def same_predictions(a: dict, b: dict) -> bool:
    pa, pb = a["predictions"], b["predictions"]
    return len(pa) == len(pb) and all(x["label"] == y["label"] and abs(x["score"] - y["score"]) < 1e-9
                                      for x, y in zip(pa, pb))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=3, help="seconds per wrk run")
    parser.add_argument("--repeat", type=int, default=3, help="runs per cell and server; the best one counts")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--rows", type=int, nargs="+", default=[1, 100])
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--skip-mlflow", action="store_true")
    parser.add_argument("--plain", action="store_true", help="also run ours with h11 and asyncio (no httptools/uvloop)")
    parser.add_argument("--write-readme", action="store_true", help="update the Serving section of bench/README.md")
    args = parser.parse_args(argv)

    from conftest import write_example_package

    work = Path(tempfile.mkdtemp(prefix="pyml-bench-"))
    package = write_example_package(work / "package")
    bodies = {n: payload(n) for n in args.rows}
    mlflow_model = None if args.skip_mlflow else save_pyfunc(package, work / "mlflow_model" / "model")
    floor = in_process(package, bodies, mlflow_model)

    servers = []
    for workers in args.workers:
        servers.append(("pyml_jupyter.serving", workers, lambda port, w=workers: [
            PYTHON, "-m", "pyml_jupyter.serving", str(package), "--port", str(port), "--workers", str(w),
            "--log-level", "warning"]))
        if args.plain:  # what an image without httptools and uvloop runs
            servers.append(("pyml_jupyter.serving h11+asyncio", workers, lambda port, w=workers: [
                PYTHON, "-m", "pyml_jupyter.serving", str(package), "--port", str(port), "--workers", str(w),
                "--http", "h11", "--loop", "asyncio", "--log-level", "warning"]))
        if mlflow_model is not None:
            servers.append(("mlflow models serve", workers, lambda port, w=workers: [
                PYTHON, "-m", "mlflow", "models", "serve", "-m", str(mlflow_model), "--env-manager", "local",
                "--port", str(port), "--workers", str(w)]))

    # The servers of one worker count run side by side and take turns, each cell --repeat times, keeping
    # each server's best run: bursts of other work on a shared machine then hit every server alike.
    results = []
    reference: dict[int, dict] = {}
    for workers in args.workers:
        running = []
        try:
            for name, w, command in servers:
                if w == workers:
                    port = free_port()
                    running.append(Server(name, command(port), port))
            for server in running:
                server.wait_ready()
                for rows, body in bodies.items():  # the same answers, or the comparison means nothing
                    answer = server.post(body)
                    if rows in reference and not same_predictions(reference[rows], answer):
                        raise RuntimeError(f"{server.name} answers differently for {rows} rows")
                    reference.setdefault(rows, answer)
            for rows, body in bodies.items():
                for connections in args.concurrency:
                    best: dict[str, dict] = {}
                    for _ in range(args.repeat):
                        for server in running:
                            r = wrk(server.url, body, connections, args.duration, work)
                            if server.name not in best or r["rps"] > best[server.name]["rps"]:
                                best[server.name] = r
                    for server in running:
                        r = best[server.name]
                        results.append({"server": server.name, "workers": workers, "rows": rows,
                                        "concurrency": connections, **r})
                        print(f"{server.name:34} w={workers} rows={rows:<4} c={connections:<3} {r['rps']:9.1f} "
                              f"req/s  p50 {r['p50']:7.2f} ms  p99 {r['p99']:7.2f} ms", flush=True)
        finally:
            for server in running:
                server.stop()

    table = render(results, floor, args)
    print()
    print(table)
    if args.write_readme:
        write_readme(ROOT / "bench" / "README.md", table)
    shutil.rmtree(work, ignore_errors=True)
    return 0


def render(results: list[dict], floor: dict, args) -> str:
    import numpy
    import pandas
    import starlette
    import uvicorn

    try:
        import httptools  # noqa: F401

        http = "httptools"
    except ImportError:
        http = "h11"
    try:
        import uvloop  # noqa: F401

        loop = "uvloop"
    except ImportError:
        loop = "asyncio"
    import mlflow

    load = "/".join(f"{x:.1f}" for x in os.getloadavg())
    lines = [
        f"Machine: {os.cpu_count()} CPUs ({platform.machine()}, load average {load} at the end of the run), "
        f"Python {platform.python_version()}, wrk on loopback sharing the CPUs; best of {args.repeat} "
        f"interleaved {args.duration} s runs per cell, keep-alive. Model: the test suite's "
        f"example package (3 columns, pandas feature step, scikit-learn LogisticRegression). "
        f"Ours: uvicorn {uvicorn.__version__} ({http}, {loop}; the `h11+asyncio` rows force the stock ones), "
        f"starlette {starlette.__version__}; peer: mlflow {mlflow.__version__} `models serve --env-manager local` "
        f"of the same package logged as a pyfunc model (its uvicorn picks {http} and {loop} too). "
        f"pandas {pandas.__version__}, numpy {numpy.__version__}.",
        "",
        "| server | workers | rows | concurrency | req/s | p50 ms | p99 ms | vs mlflow req/s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    peers = {(r["workers"], r["rows"], r["concurrency"]): r for r in results if r["server"] == "mlflow models serve"}
    for r in results:
        peer = peers.get((r["workers"], r["rows"], r["concurrency"]))
        ratio = f"{r['rps'] / peer['rps']:.1f}x" if peer and r["server"] != "mlflow models serve" else ""
        lines.append(f"| {r['server']} | {r['workers']} | {r['rows']} | {r['concurrency']} | {r['rps']:.0f} | "
                     f"{r['p50']:.2f} | {r['p99']:.2f} | {ratio} |")
    lines += ["", "In-process floor (median, no HTTP): the model's own `predict` on an enforced DataFrame; our "
                  "`scoring.invocations` (JSON bytes in, JSON bytes out) and its phases; MLflow's "
                  "`pyfunc.load_model(...).predict(df)` (its schema enforcement, then ours, then the model); in ms:", "",
              "| rows | model predict | our invocations | parse | validate | predict | serialize | mlflow pyfunc predict |",
              "|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for rows, f in floor.items():
        p = f["phases"]
        lines.append(f"| {rows} | {f['predict']:.3f} | {f['invocations']:.3f} | {p.get('parse', 0):.3f} | "
                     f"{p.get('validate', 0):.3f} | {p.get('predict', 0):.3f} | {p.get('serialize', 0):.3f} | "
                     f"{f['mlflow']:.3f} |")
    if os.getloadavg()[0] > 0.5 * (os.cpu_count() or 1):
        lines += ["", f"Caution: the machine was busy with other work (load average {load} on {os.cpu_count()} "
                      "CPUs), so the HTTP figures vary by up to 2x between runs despite the interleaving; the "
                      "in-process figures are the stable ones. Rerun on an idle machine for numbers to quote."]
    return "\n".join(lines)


def write_readme(path: Path, table: str) -> None:
    write_section("Serving", "bench/serving/bench_serving.py", "\n\n" + table, path=path)

if __name__ == "__main__":
    sys.exit(main())
