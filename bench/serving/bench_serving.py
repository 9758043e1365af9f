"""Serving benchmark: our runtime against ``mlflow models serve`` on the same model, with wrk on loopback.

    .venv/bin/python bench/serving/bench_serving.py [--duration 5] [--workers 1 2] [--write-readme]
    .venv/bin/python bench/serving/bench_serving.py --smoke   # 1 worker, 1 row, c=1, 1 s each, no containers

For each server (``python -m pyml_jupyter.serving`` and ``mlflow models serve --env-manager local`` of the same
package logged as an MLflow pyfunc model, as ``pyml_jupyter.tracking`` logs it) and each worker count, it checks
both answer the same predictions, then runs wrk (``POST /invocations``, keep-alive) with 1-row and 100-row
``dataframe_split`` payloads at concurrency 1 and 16, and reports requests/s, p50 and p99. The servers of one
worker count run side by side and take turns, and each keeps its best of ``--repeat`` runs, so that bursts of
other work on a shared machine do not favour one of them. The floor is the
same request handled in-process: ``load_package(p).predict(df)`` alone, and the framework-free
``scoring.invocations`` (parse, validate, predict, serialize) without HTTP.

With ``--mlflow-container`` (the default when Docker answers) it also compares container with container: MLflow's
image of the same pyfunc model (``mlflow.models.build_docker(..., env_manager="local")``, what ``mlflow models
build-docker --env-manager local`` runs, nginx in front of uvicorn; on bench/build/bench_build.py's derived base with
the host's CA bundle, the only way it builds behind this network's proxy; reused when a previous run left it) and our
image of the package (``images.builder.build_image``), both run with ``-p 127.0.0.1:PORT:8080`` and the same worker
count (``MLFLOW_MODELS_WORKERS`` / ``PYML_WORKERS``). Their containers and images are removed at the end unless
``--keep-images``; ``--containers-only`` runs just that comparison (and ``--write-readme`` then replaces only its
subsection of the Serving section).

Everything runs on this machine: the load generator shares its cores with the server, so absolute numbers are
pessimistic; the ratios are the point. ``--write-readme`` replaces the "Serving" section of bench/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
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


# ------------------------------------------------------------------------------------------------ containers
# Container against container: our image (``images.builder.build_image`` of the same package) and MLflow's
# (``mlflow.models.build_docker(..., env_manager="local")``, nginx in front of uvicorn), both published on
# 127.0.0.1 through Docker's port mapping. The derived base and the clean-up come from bench/build/bench_build.py.

PEER_REPOSITORY = "mlflow-bench-serving"
OURS_NAME = "bench-serving"


def _bench_build():
    folder = str(ROOT / "bench" / "build")
    if folder not in sys.path:
        sys.path.insert(0, folder)
    import bench_build

    return bench_build


def docker_reachable() -> bool:
    try:
        import docker

        docker.from_env(timeout=5).ping()
        return True
    except Exception:
        return False


def container_key(package: Path) -> str:
    """What MLflow's image depends on: the package and the mlflow version (a previous run's image is reused)."""
    import hashlib

    import mlflow

    from pyml_jupyter.serving.loader import package_digest

    return hashlib.sha256(f"{package_digest(package)}|{mlflow.__version__}".encode()).hexdigest()[:12]


def build_mlflow_image(client, mlflow_model: Path, key: str, work: Path, ca_bundle: str | None) -> tuple[str, str, float]:
    """MLflow's image of ``mlflow_model`` on python:3.11-slim + the host CA (bench_build's derived base).

    Returns (tag, run label, build seconds; 0 when an image of a previous run with the same key is reused)."""
    bb = _bench_build()
    run = f"serving-{key}"
    tag = f"{PEER_REPOSITORY}:{key}"
    if client.images.list(name=PEER_REPOSITORY, filters={"label": f"{bb.RUN_LABEL}={run}"}):
        return tag, run, 0.0
    import mlflow.models

    base = f"python:3.11-slim-bench-ca-{run}"
    bundle = Path(ca_bundle) if ca_bundle and Path(ca_bundle).is_file() else None
    bb.derive_base(client, base, run, work, bundle)  # carries the run's label, which MLflow's image inherits
    log = work / "mlflow-build-docker.log"
    started = time.perf_counter()
    with bb.output_to(log):
        try:
            mlflow.models.build_docker(model_uri=str(mlflow_model), name=tag, env_manager="local", base_image=base)
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"
        else:
            error = ""
    if error:
        raise RuntimeError(f"mlflow build_docker failed: {bb.failure_reason(log.read_text(errors='replace'))} "
                           f"({error}; log {log})")
    return tag, run, time.perf_counter() - started


def build_our_image(package: Path, key: str) -> tuple[str, float]:
    from pyml_jupyter.images.builder import build_image

    started = time.perf_counter()
    info = build_image(package, name=OURS_NAME, version=key)
    return info.tag, time.perf_counter() - started


VERSIONS = """
import importlib.metadata as m
for d in ("pandas", "scikit-learn", "uvicorn", "httptools", "uvloop"):
    try:
        print(d, m.version(d))
    except m.PackageNotFoundError:
        print(d, "-")
"""


def image_versions(client, image: str, labels: dict) -> dict:
    """What the image's own ``python`` imports: the libraries that set the serving speed."""
    try:
        out = client.containers.run(image, entrypoint=["python", "-c", VERSIONS], remove=True,
                                    network_disabled=True, labels=labels).decode()
    except Exception:
        return {}
    return dict(line.split(" ", 1) for line in out.strip().splitlines() if " " in line)


def describe_versions(v: dict) -> str:
    if not v:
        return "versions unknown"
    http = "httptools" if v.get("httptools", "-") != "-" else "h11"
    loop = "uvloop" if v.get("uvloop", "-") != "-" else "asyncio"
    return (f"uvicorn {v.get('uvicorn')} with {http} and {loop}, pandas {v.get('pandas')}, "
            f"scikit-learn {v.get('scikit-learn')}")


class ContainerServer:
    """An image run detached with ``-p 127.0.0.1:PORT:8080``, the worker count through the image's own variable."""

    def __init__(self, client, name: str, image: str, port: int, environment: dict, labels: dict) -> None:
        self.name, self.port, self.url = name, port, f"http://127.0.0.1:{port}"
        self.container = client.containers.run(image, detach=True, environment=environment, labels=labels,
                                               ports={"8080/tcp": ("127.0.0.1", port)})

    def wait_ready(self, timeout: float = 180) -> float:
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            self.container.reload()
            if self.container.status == "exited":
                raise RuntimeError(f"{self.name} exited: {self.container.logs(tail=30).decode(errors='replace')}")
            try:
                with urllib.request.urlopen(self.url + "/ping", timeout=2) as r:
                    if r.status == 200:
                        return time.monotonic() - started
            except OSError:
                time.sleep(0.3)
        raise RuntimeError(f"{self.name} did not become ready in {timeout} s")

    post = Server.post

    def stop(self) -> None:
        try:
            self.container.remove(force=True)
        except Exception:
            pass


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
    parser.add_argument("--mlflow-container", action=argparse.BooleanOptionalAction, default=None,
                        help="also run MLflow's container (build-docker, nginx + uvicorn) against ours (default: on "
                             "when Docker is reachable)")
    parser.add_argument("--containers-only", action="store_true",
                        help="only the container comparison (no process servers)")
    parser.add_argument("--keep-images", action="store_true", help="keep the images built for the comparison")
    parser.add_argument("--ca-bundle", default=None, help="the host's CA bundle, for MLflow's base image "
                                                          "(default: Python's default verify file)")
    parser.add_argument("--write-readme", action="store_true", help="update the Serving section of bench/README.md")
    parser.add_argument("--smoke", action="store_true",
                        help="one 1 s run of 1 worker, 1 row, c=1 against `mlflow models serve`, no containers")
    args = parser.parse_args(argv)
    if args.smoke:
        args.duration, args.repeat, args.workers, args.rows, args.concurrency = 1, 1, [1], [1], [1]
        args.mlflow_container, args.containers_only, args.write_readme = False, False, False
    if args.mlflow_container is None:
        args.mlflow_container = docker_reachable()
    if args.containers_only and not args.mlflow_container:
        parser.error("--containers-only needs --mlflow-container (and a reachable Docker engine)")
    if args.mlflow_container and args.skip_mlflow:
        parser.error("--mlflow-container needs the MLflow model (drop --skip-mlflow)")

    from conftest import write_example_package

    work = Path(tempfile.mkdtemp(prefix="pyml-bench-"))
    package = write_example_package(work / "package")
    bodies = {n: payload(n) for n in args.rows}
    mlflow_model = None if args.skip_mlflow else save_pyfunc(package, work / "mlflow_model" / "model")
    floor = {} if args.containers_only else in_process(package, bodies, mlflow_model)

    containers: dict = {}
    client = None
    if args.mlflow_container:
        import ssl

        import docker

        client = docker.from_env(timeout=3600)
        key = container_key(package)
        containers.update(key=key, run=f"serving-{key}")
        ca = args.ca_bundle or ssl.get_default_verify_paths().cafile or "/etc/ssl/certs/ca-certificates.crt"
    run_labels = {_bench_build().RUN_LABEL: containers["run"]} if containers else {}

    def process(name, command):
        return lambda port: Server(name, command(port), port)

    def container(name, which, environment):  # the images are built later, inside the try
        return lambda port: ContainerServer(client, name, containers[which], port, environment, run_labels)

    servers = []
    for workers in args.workers:
        if not args.containers_only:
            servers.append(("pyml_jupyter.serving", workers, process("pyml_jupyter.serving", lambda port, w=workers: [
                PYTHON, "-m", "pyml_jupyter.serving", str(package), "--port", str(port), "--workers", str(w),
                "--log-level", "warning"])))
            if args.plain:  # what an image without httptools and uvloop runs
                name = "pyml_jupyter.serving h11+asyncio"
                servers.append((name, workers, process(name, lambda port, w=workers: [
                    PYTHON, "-m", "pyml_jupyter.serving", str(package), "--port", str(port), "--workers", str(w),
                    "--http", "h11", "--loop", "asyncio", "--log-level", "warning"])))
            if mlflow_model is not None:
                servers.append(("mlflow models serve", workers, process("mlflow models serve", lambda port, w=workers: [
                    PYTHON, "-m", "mlflow", "models", "serve", "-m", str(mlflow_model), "--env-manager", "local",
                    "--port", str(port), "--workers", str(w)])))
        if containers:
            servers.append(("pyml_jupyter container", workers, container(
                "pyml_jupyter container", "ours", {"PYML_WORKERS": str(workers)})))
            servers.append(("mlflow container", workers, container(
                "mlflow container", "mlflow", {"MLFLOW_MODELS_WORKERS": str(workers)})))

    # The servers of one worker count run side by side and take turns, each cell --repeat times, keeping
    # each server's best run: bursts of other work on a shared machine then hit every server alike.
    results = []
    reference: dict[int, dict] = {}
    try:
        if containers:
            containers["mlflow"], _, containers["mlflow_seconds"] = build_mlflow_image(
                client, mlflow_model, containers["key"], work, ca)
            print(f"mlflow image {containers['mlflow']}: " + (f"built in {containers['mlflow_seconds']:.0f} s"
                  if containers["mlflow_seconds"] else "reused from a previous run"), flush=True)
            containers["ours"], containers["ours_seconds"] = build_our_image(package, containers["key"])
            print(f"our image {containers['ours']}: built in {containers['ours_seconds']:.0f} s", flush=True)
            for which in ("ours", "mlflow"):
                containers[f"{which}_versions"] = image_versions(client, containers[which], run_labels)
        run_all(args, servers, bodies, reference, results, work)
    finally:
        if containers and not args.keep_images:
            bb = _bench_build()
            if "ours" in containers:
                with contextlib.suppress(Exception):
                    client.images.remove(containers["ours"])
            removed = bb.cleanup(client, containers["run"])  # MLflow's image, its base, their containers
            print(f"removed our image and {removed[0]} containers, {removed[1]} images of {containers['run']}",
                  flush=True)
        elif client is not None:
            bb = _bench_build()
            for c in client.containers.list(all=True, filters={"label": f"{bb.RUN_LABEL}={containers['run']}"}):
                with contextlib.suppress(Exception):
                    c.remove(force=True)

    table = render(results, floor, args, containers)
    print()
    print(table)
    if args.write_readme:
        write_readme(ROOT / "bench" / "README.md", table, args.containers_only)
    shutil.rmtree(work, ignore_errors=True)
    return 0


def run_all(args, servers, bodies, reference, results, work) -> None:
    for workers in args.workers:
        running = []
        try:
            for name, w, start in servers:
                if w == workers:
                    running.append(start(free_port()))
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


def render(results: list[dict], floor: dict, args, containers: dict | None = None) -> str:
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
    # Processes are compared with `mlflow models serve`, containers with MLflow's container.
    peer_of = lambda name: "mlflow container" if name.endswith(" container") else "mlflow models serve"  # noqa: E731
    peers = {(r["server"], r["workers"], r["rows"], r["concurrency"]): r for r in results
             if r["server"] in ("mlflow models serve", "mlflow container")}
    for r in results:
        peer = peers.get((peer_of(r["server"]), r["workers"], r["rows"], r["concurrency"]))
        ratio = f"{r['rps'] / peer['rps']:.1f}x" if peer and not r["server"].startswith("mlflow") else ""
        lines.append(f"| {r['server']} | {r['workers']} | {r['rows']} | {r['concurrency']} | {r['rps']:.0f} | "
                     f"{r['p50']:.2f} | {r['p99']:.2f} | {ratio} |")
    if containers and "ours" in containers:
        import docker

        engine = docker.from_env().version()
        built = (f"built in {containers['mlflow_seconds']:.0f} s" if containers.get("mlflow_seconds")
                 else "reused from a previous run of this script")
        lines += ["", f"Container rows: both images run detached on Docker {engine.get('Version')} with "
                      "`-p 127.0.0.1:PORT:8080`, wrk going through Docker's port mapping to both. "
                      f"`pyml_jupyter container` is our image of the same package (`images.builder.build_image`, "
                      f"base `python:3.11-slim`; workers via `PYML_WORKERS`; "
                      f"{describe_versions(containers.get('ours_versions', {}))}); `mlflow container` is "
                      f"`mlflow.models.build_docker(<the pyfunc model>, env_manager=\"local\", base_image=...)` "
                      "(what `mlflow models build-docker --env-manager local` runs; the base is `python:3.11-slim` "
                      "plus the host's CA bundle, as in bench/build/bench_build.py, since the CLI's own base "
                      f"cannot reach PyPI through this network's proxy; {built}): nginx (one worker process) on "
                      "8080 proxying to uvicorn on 127.0.0.1:8000, workers via `MLFLOW_MODELS_WORKERS` (set to the "
                      "same count as ours; "
                      f"{describe_versions(containers.get('mlflow_versions', {}))} in the image). Their ratio column is ours/MLflow's container; the process rows' is "
                      "against `mlflow models serve`."]
        goal = [r for r in results if r["server"] == "pyml_jupyter container" and r["concurrency"] == 16]
        if goal:
            verdicts = []
            for r in goal:
                peer = peers.get(("mlflow container", r["workers"], r["rows"], 16))
                if peer:
                    ratio = r["rps"] / peer["rps"]
                    verdicts.append(f"{r['workers']} worker(s), {r['rows']} row(s): {ratio:.1f}x "
                                    + ("(met)" if ratio >= 2 else "(**not met**)"))
            lines += ["", "Goal, at least 2x MLflow's container at c=16: " + "; ".join(verdicts) + "."]
    if not floor:
        return "\n".join(lines)
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


CONTAINERS_HEADING = "### Container against container"


def write_readme(path: Path, table: str, containers_only: bool = False) -> None:
    if not containers_only:
        write_section("Serving", "bench/serving/bench_serving.py", "\n\n" + table, path=path)
        return
    # Only the container comparison was run: keep the section's process tables, replace its containers part.
    text = path.read_text() if path.exists() else ""
    match = re.search(r"^## Serving\n\nMeasured by [^\n]*\n(.*?)(?=^## |\Z)", text, re.S | re.M)
    kept = match.group(1).split(CONTAINERS_HEADING)[0].rstrip() if match else ""
    sub = (f"{CONTAINERS_HEADING}\n\nMeasured by `bench/serving/bench_serving.py --containers-only --write-readme` "
           f"({time.strftime('%Y-%m-%d')}); the tables above are from the full run.\n\n{table}")
    write_section("Serving", "bench/serving/bench_serving.py", ("\n" + kept if kept else "") + "\n\n" + sub,
                  path=path)

if __name__ == "__main__":
    sys.exit(main())
