"""Build benchmark: our image build (``api.build``) against ``mlflow.models.build_docker`` on the same registered model.

    .venv/bin/python bench/build/bench_build.py [--versions 3] [--ca-bundle PATH] [--write-readme]
    .venv/bin/python bench/build/bench_build.py --smoke    # ours only: one build (layer cache on), one request

The model is the batch benchmark's example (a feature function and a scikit-learn LogisticRegression),
registered with ``register()`` in a fresh local SQLite store. Version 1 is built cold by both (ours with the
engine's layer cache bypassed); then ``--versions`` new versions (retrained on other rows: the artifact changes,
the requirements do not) are registered and each is rebuilt by both, alternating who goes first. Times are end
to end as a user calls them (resolve the version, download the model, render, build). Sizes are ``docker image
inspect``'s ``Size``; "added over base" subtracts the base image's.

The peer, in the order tried: ``mlflow models build-docker --env-manager local`` (the CLI; it has no flag for the
base image), ``mlflow.models.build_docker(..., base_image="python:3.11-slim")``, then the same on a base derived
from ``python:3.11-slim`` with the host's CA bundle copied in (``--ca-bundle``; what a user behind a
TLS-inspecting proxy builds once). Each failure is recorded with its reason. The last version's images are run
and answer 5 rows, compared with the model's predictions in this process.

Everything this script makes carries the label ``pyml.bench.run=<run>`` (MLflow's images inherit it from the
derived base) or is one of our images of the model ``bench_build_<run>``; both are removed at the end unless
``--keep-images``. ``--write-readme`` replaces the "Build" section of bench/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import shutil
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path[:0] = [str(ROOT / "bench"), str(ROOT / "bench" / "batch")]
from readme import write_section  # noqa: E402  (bench/readme.py)

RUN_LABEL = "pyml.bench.run"
BASE = "python:3.11-slim"
PEER = "mlflow-bench"


# ----------------------------------------------------------------------------------- shared with bench_serving


def derive_base(client, tag: str, run: str, work: Path, bundle: Path | None) -> str:
    """``python:3.11-slim`` plus the host's CA bundle (when given), labelled with ``run``; returns ``tag``."""
    folder = work / f"base-{run}"
    folder.mkdir(parents=True, exist_ok=True)
    lines = [f"FROM {BASE}", f'LABEL {RUN_LABEL}="{run}"']
    if bundle is not None:
        shutil.copyfile(bundle, folder / "host-ca.crt")
        lines += ["COPY host-ca.crt /etc/ssl/certs/host-ca.crt",
                  "ENV PIP_CERT=/etc/ssl/certs/host-ca.crt REQUESTS_CA_BUNDLE=/etc/ssl/certs/host-ca.crt "
                  "SSL_CERT_FILE=/etc/ssl/certs/host-ca.crt"]
    (folder / "Dockerfile").write_text("\n".join(lines) + "\n")
    client.images.build(path=str(folder), tag=tag, rm=True, labels={RUN_LABEL: run})
    return tag


@contextlib.contextmanager
def output_to(log: Path):
    """Send this process's stdout and stderr (file descriptors included: docker's CLI writes there) to ``log``."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with open(log, "ab") as out:
        os.dup2(out.fileno(), 1)
        os.dup2(out.fileno(), 2)
        try:
            yield log
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


def failure_reason(log: str) -> str:
    """The failing step of a Docker build log and its most telling error line."""
    steps = re.findall(r"^(?:Step \d+/\d+ : |#\d+ \[[^\]]*\] )(.+)$", log, re.M)
    errors = [line.strip() for line in log.splitlines()
              if re.search(r"ERROR|error|CERTIFICATE_VERIFY_FAILED|no such host|not found", line)]
    step = f"step `{steps[-1].strip()}`" if steps else "the build"
    return f"{step}: {errors[-1][:300]}" if errors else f"{step} failed"


def cleanup(client, run: str) -> tuple[int, int]:
    """Remove the containers and images labelled with ``run``; returns (containers, images) removed."""
    containers = client.containers.list(all=True, filters={"label": f"{RUN_LABEL}={run}"})
    for container in containers:
        with contextlib.suppress(Exception):
            container.remove(force=True)
    removed = 0
    for _ in range(3):  # children before parents: repeat until nothing more goes
        images = client.images.list(filters={"label": f"{RUN_LABEL}={run}"})
        if not images:
            break
        for image in images:
            try:
                client.images.remove(image.id, force=True)
                removed += 1
            except Exception:  # noqa: BLE001 - still a parent of another; the next round takes it
                pass
    return len(containers), removed


# ------------------------------------------------------------------------------------------------ the model


def register_version(name: str, seed: int) -> int:
    """Register a new version of the example model, trained on rows drawn with ``seed``; returns the version."""
    import bench_batch as bb
    from sklearn.linear_model import LogisticRegression

    from pyml_jupyter import register

    train = bb.example_frame(200, seed=seed)
    y = (train["x1"] + 0.5 * train["x2"] > 0).astype(int)
    clf = LogisticRegression().fit(bb.add_features(train).to_numpy(), y)
    registered = register(bb.ExampleModel, name, bb.example_frame(5, seed=2), {"clf": clf}, namespace=vars(bb))
    return int(registered.version)


# ----------------------------------------------------------------------------------------------- the builds


def build_ours(name: str, version: int, no_cache: bool = False) -> dict:
    from pyml_jupyter import api

    started = time.perf_counter()
    info = api.build(f"{name}/{version}", base_image=BASE, no_cache=no_cache)
    return {"seconds": time.perf_counter() - started, "tag": info.tag, "size": info.size_bytes,
            "reused": f"{info.cached_steps}/{info.total_steps}"}


def build_peer(client, how: str, name: str, version: int, run: str, work: Path, base: str | None) -> dict:
    """One way of building MLflow's image; ``{"error": reason}`` when it fails."""
    tag = f"{PEER}-{run}:{version}"
    log = work / f"mlflow-{how}-{version}.log"
    started = time.perf_counter()
    if how == "cli":
        done = subprocess.run([sys.executable, "-m", "mlflow", "models", "build-docker", "-m",
                               f"models:/{name}/{version}", "-n", tag, "--env-manager", "local"],
                              stdout=log.open("wb"), stderr=subprocess.STDOUT, env=os.environ)
        error = "" if done.returncode == 0 else f"exit {done.returncode}"
    else:
        import mlflow.models

        with output_to(log):
            try:
                mlflow.models.build_docker(model_uri=f"models:/{name}/{version}", name=tag, env_manager="local",
                                           base_image=base)
                error = ""
            except BaseException as exc:  # noqa: BLE001 - MLflow raises SystemExit-like errors too
                error = f"{type(exc).__name__}: {exc}"
    seconds = time.perf_counter() - started
    text = log.read_text(errors="replace")
    if error or not client.images.list(name=tag):
        return {"error": failure_reason(text) or error, "how": how}
    image = client.images.get(tag)
    cached = text.count("Using cache") + text.count(" CACHED")
    steps = len(re.findall(r"^Step \d+/\d+ : ", text, re.M)) or len(re.findall(r"^#\d+ \[", text, re.M))
    return {"seconds": seconds, "tag": tag, "size": int(image.attrs["Size"]), "reused": f"{cached}/{steps}",
            "how": how}


def largest_layers(client, tag: str, base: str, n: int = 3) -> list[tuple[str, int]]:
    """The biggest layers of ``tag`` above ``base``: (command, bytes)."""
    below = {layer["Id"] for layer in client.images.get(base).history() if layer["Id"] != "<missing>"}
    layers = []
    for layer in client.images.get(tag).history():
        if layer["Id"] in below:
            break
        command = re.sub(r"^/bin/sh -c (#\(nop\) )?", "", layer.get("CreatedBy", "")).strip()
        layers.append((command[:90], int(layer.get("Size", 0))))
    return sorted(layers, key=lambda item: -item[1])[:n]


def answers_like_the_model(client, tag: str, name: str, version: int, run: str) -> str:
    """Run ``tag``, send 5 rows, compare with the model's predictions in this process."""
    import bench_batch as bb

    from pyml_jupyter import api

    rows = bb.example_frame(5, seed=9)
    expected = api.load(f"{name}/{version}").predict(rows)
    container = client.containers.run(tag, detach=True, labels={RUN_LABEL: run}, ports={"8080/tcp": ("127.0.0.1", None)})
    try:
        deadline = time.monotonic() + 120
        body = json.dumps({"dataframe_split": {"columns": list(rows.columns),
                                               "data": rows.astype(object).values.tolist()}}).encode()
        while True:
            container.reload()
            port = (container.ports.get("8080/tcp") or [{}])[0].get("HostPort")
            try:
                request = urllib.request.Request(f"http://127.0.0.1:{port}/invocations", data=body,
                                                 headers={"Content-Type": "application/json"})
                with urllib.request.urlopen(request, timeout=10) as response:
                    answer = json.loads(response.read())
                break
            except (OSError, ValueError):
                if time.monotonic() > deadline or container.status == "exited":
                    return f"did not answer: {container.logs(tail=5).decode(errors='replace')}"
                time.sleep(0.5)
        predictions = answer["predictions"] if isinstance(answer, dict) else answer
        same = len(predictions) == len(expected) and all(
            abs(p["score"] - s) < 1e-9 and p["label"] == lab
            for p, s, lab in zip(predictions, expected["score"], expected["label"]))
        return f"same predictions as in-process ({len(rows)} rows)" if same else f"DIFFERENT predictions: {answer}"
    finally:
        container.remove(force=True)


# ---------------------------------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--versions", type=int, default=3, help="new versions rebuilt after the cold build")
    parser.add_argument("--ca-bundle", default=None, help="the host's CA bundle for MLflow's base "
                                                          "(default: Python's default verify file)")
    parser.add_argument("--smoke", action="store_true", help="ours only, one rebuild: checks that it runs")
    parser.add_argument("--keep-images", action="store_true", help="keep the images built here")
    parser.add_argument("--write-readme", action="store_true", help="update the Build section of bench/README.md")
    args = parser.parse_args(argv)
    if args.smoke:
        args.versions = 0

    import docker

    run = os.urandom(4).hex()
    name = f"bench_build_{run}"
    work = Path(tempfile.mkdtemp(prefix="pyml-bench-build-"))
    os.chdir(work)
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{work / 'mlflow.db'}"
    client = docker.from_env(timeout=3600)
    results: dict = {"ours": [], "peer": [], "attempts": []}
    try:
        measure(client, args, name, run, work, results)
    finally:
        if not args.keep_images:
            from pyml_jupyter.images.builder import remove_image

            for version in range(1, args.versions + 2):
                with contextlib.suppress(Exception):
                    remove_image(name, version, client=client, force=True)
            cleanup(client, run)
        shutil.rmtree(work, ignore_errors=True)
    table = render(client, results, args)
    print()
    print(table)
    if args.write_readme and not args.smoke:
        write_section("Build", "bench/build/bench_build.py", "\n\n" + table)
    return 0


def measure(client, args, name: str, run: str, work: Path, results: dict) -> None:
    version = register_version(name, seed=1)
    results["ours"].append(build_ours(name, version, no_cache=not args.smoke))
    print(f"ours cold: {results['ours'][-1]['seconds']:.1f} s", flush=True)
    peer_base = None
    if not args.smoke:
        bundle = args.ca_bundle or ssl.get_default_verify_paths().cafile or "/etc/ssl/certs/ca-certificates.crt"
        derived = derive_base(client, f"python:3.11-slim-bench-ca-{run}", run, work,
                              Path(bundle) if Path(bundle).is_file() else None)
        for how, base in (("cli", None), ("plain base", BASE), ("base with host CA", derived)):
            attempt = build_peer(client, how, name, version, run, work, base)
            results["attempts"].append(attempt)
            print(f"mlflow ({how}): " + (attempt.get("error") or f"{attempt['seconds']:.1f} s"), flush=True)
            if "error" not in attempt:
                results["peer"].append(attempt)
                peer_base = (how, base)
                break
    for i in range(args.versions):
        version = register_version(name, seed=10 + i)
        order = ["ours", "peer"] if i % 2 == 0 else ["peer", "ours"]
        for who in order:
            if who == "ours":
                results["ours"].append(build_ours(name, version))
            elif peer_base is not None:
                results["peer"].append(build_peer(client, peer_base[0], name, version, run, work, peer_base[1]))
        print(f"version {version} rebuilt: ours {results['ours'][-1]['seconds']:.1f} s", flush=True)
    results["base"] = peer_base[1] if peer_base and peer_base[1] else BASE
    results["smoke"] = {r["tag"]: answers_like_the_model(client, r["tag"], name, version, run)
                        for r in (results["ours"][-1:] + results["peer"][-1:]) if "tag" in r}
    results["layers"] = {who: largest_layers(client, results[who][-1]["tag"], results["base"] if who == "peer"
                                             else BASE) for who in ("ours", "peer") if results[who]}
    results["base_sizes"] = {b: int(client.images.get(b).attrs["Size"]) for b in {BASE, results["base"]}}
    for tag, verdict in results["smoke"].items():
        print(f"{tag}: {verdict}", flush=True)
        if not verdict.startswith("same"):
            raise RuntimeError(f"{tag} {verdict}")


def render(client, results: dict, args) -> str:
    import mlflow

    engine = client.version().get("Version")
    load = "/".join(f"{x:.1f}" for x in os.getloadavg())
    mb = lambda b: f"{b / 1e6:.0f}"  # noqa: E731
    lines = [f"Model: the batch benchmark's example, registered with `register()` in a fresh local SQLite store. "
             f"Version 1 built cold by both (ours with the layer cache bypassed), then {args.versions} new "
             f"version(s) rebuilt by each, alternating who goes first. Docker {engine}, mlflow {mlflow.__version__}, "
             f"Python {platform.python_version()}, {os.cpu_count()} CPUs ({platform.machine()}), load average "
             f"{load} at the end. Base `{BASE}` ({mb(results['base_sizes'][BASE])} MB).", "",
             "| image | cold build s | rebuild s, best / median | steps reused on rebuild | image MB | "
             "added over base MB | added vs mlflow |", "|---|---:|---:|---:|---:|---:|---:|"]
    added = {}
    for who, base in (("peer", results["base"]), ("ours", BASE)):
        if results[who]:
            added[who] = results[who][-1]["size"] - results["base_sizes"][base]
    for attempt in results["attempts"]:
        if "error" in attempt:
            lines.append(f"| mlflow ({attempt['how']}) | failed: {attempt['error']} | | | | | |")
    for who, label in (("ours", "pyml_jupyter `api.build`"), ("peer", "`mlflow.models.build_docker`")):
        runs = results[who]
        if not runs:
            continue
        rebuilds = [r["seconds"] for r in runs[1:]] or [float("nan")]
        ratio = f"{added[who] / added['peer']:.2f}x" if "peer" in added else ""
        lines.append(f"| {label} | {runs[0]['seconds']:.1f} | {min(rebuilds):.2f} / {statistics.median(rebuilds):.2f}"
                     f" | {runs[-1]['reused']} | {mb(runs[-1]['size'])} | {mb(added[who])} | {ratio} |")
    for who, layers in results.get("layers", {}).items():
        described = "; ".join(f"`{cmd}` {mb(size)} MB" for cmd, size in layers)
        lines += ["", f"Largest layers above the base, {'ours' if who == 'ours' else 'MLflow'}: {described}."]
    lines += ["", "Smoke check of the last version's images (run, `POST /invocations` with 5 rows, compared with the "
                  "model's predictions in-process): "
              + "; ".join(f"{tag}: {verdict}" for tag, verdict in results.get("smoke", {}).items()) + "."]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
