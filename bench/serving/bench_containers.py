"""Container against container, each with its default settings: our image and MLflow's, same model, c=16, 1 row.

    .venv/bin/python bench/serving/bench_containers.py [--duration 5] [--repeat 3] [--write-readme]
    .venv/bin/python bench/serving/bench_containers.py --smoke    # render MLflow's Dockerfile only: does it still run?

The model is bench/serving/house_price.py's (as in bench_batching.py), put through the real contract check.

* Ours: ``images.builder.build_image`` of the package, run with no settings (its workers follow the CPUs the
  container may use, and batching is on when the contract check proved batch invariance).
* MLflow's: the Dockerfile ``mlflow models generate-dockerfile --env-manager local`` writes for the same package
  logged as a pyfunc model, the image ``mlflow models build-docker`` would build, with two changes only: the ``FROM``
  line names the local ``python:3.11-slim`` (no registry is reachable here; scripts/base-image.sh makes it), and pip
  installs from wheels resolved on this machine (``PIP_NO_INDEX``/``PIP_FIND_LINKS``, the wheelhouse our own images
  use: pip inside a build cannot verify this network's TLS-inspecting proxy). Its nginx, its server and its own
  default worker count (``MLFLOW_MODELS_WORKERS`` unset: one per CPU) are what run.

Both images are built once and reused by later runs (keyed by the package, the mlflow version and the rendered
Dockerfile); containers are run detached with ``-p 127.0.0.1:PORT:8080`` and nothing else, their answers checked
against the model's own, then wrk (keep-alive, ``POST /invocations``, 1-row ``dataframe_split``) at c=16 takes turns
on them, ``--repeat`` runs of ``--duration`` s each, the best per container counting. It prints both and the ratio;
``--write-readme`` replaces the "Containers, default to default" section of bench/README.md.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path[:0] = [str(HERE), str(ROOT / "bench")]
from bench_batching import check_answers, frame, http_body, make_package, uptime_load, wrk  # noqa: E402
from bench_serving import PYTHON, ContainerServer, free_port, save_pyfunc  # noqa: E402
from readme import write_section  # noqa: E402

BASE = "python:3.11-slim"
LABEL = "pyml.bench.containers"
WHEELS = "/tmp/mlflow-wheels"


# ------------------------------------------------------------------------------------ MLflow's image


def generate_mlflow_context(mlflow_model: Path, out: Path) -> Path:
    """``mlflow models generate-dockerfile --env-manager local`` of the model, into ``out``."""
    path = f"{Path(PYTHON).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    subprocess.run([PYTHON, "-m", "mlflow", "models", "generate-dockerfile", "-m", str(mlflow_model),
                    "--env-manager", "local", "-d", str(out)], check=True, capture_output=True, text=True,
                   env={**os.environ, "PATH": path})
    return out


def patch_dockerfile(text: str, base: str) -> str:
    """MLflow's Dockerfile with only its base and its pip source changed (``FROM base``, then offline wheels)."""
    lines = text.splitlines()
    froms = [i for i, line in enumerate(lines) if line.startswith("FROM ")]
    if len(froms) != 1:
        raise RuntimeError(f"expected one FROM line in MLflow's Dockerfile, found {len(froms)}")
    i = froms[0]
    lines[i:i + 1] = [f"FROM {base}", f"COPY wheels/ {WHEELS}/",
                      f"ENV PIP_NO_INDEX=1 PIP_FIND_LINKS={WHEELS} PIP_DISABLE_PIP_VERSION_CHECK=1"]
    return "\n".join(lines) + "\n"


def mlflow_requirements(mlflow_model: Path) -> list[str]:
    """What MLflow's Dockerfile pip-installs: mlflow itself, the model's build dependencies (python_env.yaml) and
    requirements, gunicorn[gevent]."""
    import mlflow
    import yaml

    build = yaml.safe_load((mlflow_model / "python_env.yaml").read_text()).get("build_dependencies") or []
    model = [line.strip() for line in (mlflow_model / "requirements.txt").read_text().splitlines()
             if line.strip() and not line.startswith("#")]
    return list(dict.fromkeys([f"mlflow=={mlflow.__version__}", *build, *model, "gunicorn[gevent]"]))


def build_mlflow_image(client, package: Path, mlflow_model: Path, name: str, work: Path) -> tuple[str, bool]:
    """MLflow's image of the package's pyfunc model (reused when built before); returns (tag, built now)."""
    from pyml_jupyter.images.wheelhouse import TargetPlatform, ensure_wheelhouse
    from pyml_jupyter.serving.loader import package_digest

    context = generate_mlflow_context(mlflow_model, work / "mlflow-context")
    dockerfile = context / "Dockerfile"
    dockerfile.write_text(patch_dockerfile(dockerfile.read_text(), BASE))
    # the package's digest, not the model folder's (MLflow stamps a fresh time and id into each save)
    key = hashlib.sha256(dockerfile.read_bytes() + package_digest(package).encode()).hexdigest()[:12]
    tag = f"{name}-mlflow:{key}"
    if client.images.list(name=tag):
        return tag, False
    # The base (Debian bookworm) runs Python 3.11 on glibc 2.36.
    wheels = ensure_wheelhouse(mlflow_requirements(mlflow_model), TargetPlatform.for_linux("3.11", libc_version="2.36"))
    shutil.copytree(wheels, context / "wheels", ignore=shutil.ignore_patterns("*.json"))
    done = subprocess.run(["docker", "build", "--force-rm", "-t", tag, "--label", f"{LABEL}={name}", str(context)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"MLflow's image did not build:\n{(done.stdout + done.stderr)[-4000:]}")
    return tag, True


# --------------------------------------------------------------------------------------- our image


def build_our_image(client, package: Path, name: str) -> tuple[str, bool]:
    """Our image of the package (reused when built before); returns (tag, built now)."""
    from pyml_jupyter.images.builder import build_image
    from pyml_jupyter.images.context import sanitize_tag
    from pyml_jupyter.serving.loader import package_digest

    version = package_digest(package).split(":")[-1][:12]
    tag = sanitize_tag(name, version)
    if client.images.list(name=tag):
        return tag, False
    return build_image(package, name=name, version=version).tag, True


# ------------------------------------------------------------------------------------------- runs


def run(args, client, images: dict[str, str], work: Path) -> dict[str, dict]:
    from pyml_jupyter.serving.loader import load_package

    expected = {n: load_package(args.package).predict(frame(n, 3))["price"].tolist() for n in (1, 100)}
    servers = {who: ContainerServer(client, f"{args.name}-{who}", image, free_port(), {}, {LABEL: args.name})
               for who, image in images.items()}
    best: dict[str, dict] = {}
    try:
        for server in servers.values():
            server.wait_ready()
            check_answers(server, expected)
        for who, server in servers.items():
            best.setdefault(who, {})["processes"] = _processes(server)
        for _ in range(args.repeat):
            for who, server in servers.items():
                r = wrk(server.url, [http_body(1)], 16, args.duration, work)
                if r["rps"] > best[who].get("rps", 0):
                    best[who].update(r)
    finally:
        for server in servers.values():
            server.stop()
    return best


def _processes(server: ContainerServer) -> str:
    """The container's serving workers (uvicorn's spawned children; 1 when it runs the app itself)."""
    top = server.container.top(ps_args="-eo pid,args")
    commands = [proc[-1] for proc in top.get("Processes") or []]
    workers = sum("spawn_main" in command for command in commands) or 1
    front = " behind nginx" if any(command.startswith("nginx") for command in commands) else ""
    return f"{workers}{front}"


def render(best: dict[str, dict], args, load: tuple[str, str]) -> str:
    ratio = best["ours"]["rps"] / best["mlflow"]["rps"]
    lines = [f"Machine: {os.cpu_count()} CPUs, load average {load[0]} before and {load[1]} after the run (`uptime`); "
             f"best of {args.repeat} interleaved {args.duration:g} s wrk runs per container at c=16, 1-row "
             "`dataframe_split` requests, keep-alive, through Docker's port mapping on 127.0.0.1. Both containers "
             "run with no settings at all. Model: bench/serving/house_price.py (GradientBoostingRegressor behind a "
             "pandas feature step). Docker's port mapping carries every request of both.",
             "",
             "Ours: `images.builder.build_image` of the package. MLflow's: the Dockerfile of `mlflow models "
             "generate-dockerfile --env-manager local` (the image `mlflow models build-docker` builds: nginx in "
             "front of MLflow's server) with two changes: `FROM python:3.11-slim` (the local base) and pip reading "
             "wheels resolved on the host (`PIP_NO_INDEX`, `PIP_FIND_LINKS`), since pip inside a build cannot "
             "verify this network's TLS proxy.",
             "", "| container | serving workers | req/s | p50 ms | p99 ms |", "|---|---|---:|---:|---:|"]
    for who in ("ours", "mlflow"):
        r = best[who]
        lines.append(f"| {who} | {r['processes']} | {r['rps']:.0f} | {r['p50']:.2f} | {r['p99']:.2f} |")
    lines += ["", f"Goal (batching issue): ours at least 8x MLflow's at c=16, default to default: {ratio:.1f}x "
                  f"({'met' if ratio >= 8 else 'NOT met'})."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=5, help="seconds per wrk run")
    parser.add_argument("--repeat", type=int, default=3, help="runs per container; the best one counts")
    parser.add_argument("--name", default="bench-containers", help="prefix of the images and containers")
    parser.add_argument("--smoke", action="store_true", help="render and check MLflow's Dockerfile only (no builds)")
    parser.add_argument("--write-readme", action="store_true", help="update bench/README.md's section")
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="pyml-bench-containers-"))
    try:
        args.package = make_package(work)
        mlflow_model = save_pyfunc(args.package, work / "mlflow_model" / "model")
        if args.smoke:
            text = patch_dockerfile((generate_mlflow_context(mlflow_model, work / "ctx") / "Dockerfile").read_text(),
                                    BASE)
            print(text)
            print("requirements:", mlflow_requirements(mlflow_model))
            return 0
        import docker

        client = docker.from_env(timeout=600)
        images = {}
        images["ours"], built = build_our_image(client, args.package, args.name)
        print(f"ours: {images['ours']} ({'built' if built else 'reused'})", flush=True)
        images["mlflow"], built = build_mlflow_image(client, args.package, mlflow_model, args.name, work)
        print(f"mlflow: {images['mlflow']} ({'built' if built else 'reused'})", flush=True)
        before = uptime_load()
        best = run(args, client, images, work)
        table = render(best, args, (before, uptime_load()))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print()
    print(table)
    if args.write_readme:
        write_section("Containers, default to default", "bench/serving/bench_containers.py", "\n\n" + table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
