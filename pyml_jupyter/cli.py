"""The ``pyml`` command line: a thin face over :mod:`pyml_jupyter.api` (after mlflow's ``models/cli.py``).

    pyml models                          list registered models and their state
    pyml serve NAME[/VERSION]|PACKAGE    serve a model locally with the serving runtime, without Docker
    pyml build NAME[/VERSION]            build its Docker image
    pyml deploy NAME[/VERSION]           run it as a container on 127.0.0.1
    pyml deployments                     list running deployments
    pyml stop NAME[/VERSION]             stop a deployment
    pyml prune NAME [--keep N]           remove a model's old images (all but the N newest)
    pyml test NAME[/VERSION] [--all]     compare the container's (--all: every target's) predictions with
                                         in-process ones; --json prints the report as JSON
    pyml batch NAME[/VERSION] --query SQL --output TABLE   score a query on Spark into a table
    pyml promote NAME/VERSION [--alias champion] [--compare champion] [--targets all]   move an alias behind the gates
    pyml push NAME[/VERSION] --registry HOST[:PORT]   push its image (REGISTRY/pyml/NAME:VERSION, alias tags)
    pyml export NAME[/VERSION] [--format kserve|kubernetes] [--registry R] [--output PATH]   write manifests
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from . import api
from .errors import HINT_BUILD, HINT_DEPLOYMENTS, HINT_PUSH, HINT_REGISTER, PymlError, with_hint
from .progress import Progress
from .uris import redact
from .widgets import show_progress


# What to do next after a core error, in a shell's words (errors.with_hint).
HINTS = {
    HINT_REGISTER: "Register it from a notebook: %pyml_register or pyml_jupyter.register().",
    HINT_BUILD: "Build it with `pyml build NAME/VERSION`.",
    HINT_DEPLOYMENTS: "See `pyml deployments`.",
    HINT_PUSH: "Push it with `pyml push NAME/VERSION --registry HOST[:PORT]`, or give the registry.",
}


def _serve(args: argparse.Namespace) -> int:
    package = api.package_path(args.model)
    argv = [sys.executable, "-m", "pyml_jupyter.serving", str(package), "--host", args.host, "--port", str(args.port),
            "--workers", str(args.workers)]
    os.execv(sys.executable, argv)
    return 0  # pragma: no cover - execv does not return


def _progress(title: str) -> Progress:
    return show_progress(Progress(title))


def _run(args: argparse.Namespace) -> int:
    cmd = args.command
    if cmd == "serve":
        return _serve(args)
    if cmd == "models":
        from .displays import ModelTable

        print(ModelTable(api.list_models()))
    elif cmd == "build":
        with _progress(f"build {args.ref}") as p:
            image = api.build(args.ref, base_image=args.base_image, no_cache=args.no_cache, progress=p)
        print(image)
    elif cmd == "deploy":
        with _progress(f"deploy {args.ref}") as p:
            print(api.deploy(args.ref, port=args.port, base_image=args.base_image, memory=args.memory,
                             pids_limit=args.pids_limit, allowed_hosts=args.allowed_hosts, token=args.token or None,
                             progress=p))
    elif cmd == "deployments":
        from .displays import DeploymentTable

        print(DeploymentTable(api.deployments()))
    elif cmd == "stop":
        from .displays import DeploymentTable

        print(DeploymentTable(api.stop(args.ref), title="Stopped"))
    elif cmd == "prune":
        removed = api.prune(args.name, keep=args.keep)
        print(f"Removed {len(removed)} image(s) of {args.name}" + "".join(f"\n  {image!r}" for image in removed))
    elif cmd == "test":
        target = "all" if args.all else args.target
        if args.json:  # for a parent process: progress events on stderr, the report as one JSON line
            report = api.test(args.ref, target=target, progress=Progress(f"test {args.ref}").relay_to(sys.stderr))
            print(json.dumps(report.to_dict(), allow_nan=False))
        else:
            with _progress(f"test {args.ref}") as p:
                report = api.test(args.ref, target=target, progress=p)
            print(report)
        return 0 if report.ok else 1
    elif cmd == "batch":
        with _progress(f"batch {args.ref}") as p:
            print(api.predict_offline(args.ref, args.query, args.output, keep=args.keep, mode=args.mode, progress=p))
    elif cmd == "promote":
        if args.json:  # for a parent process: progress events on stderr, the promotion as one JSON line
            promotion = api.promote(args.ref, args.alias, compare=args.compare, targets=args.targets,
                                    progress=Progress(f"promote {args.ref}").relay_to(sys.stderr))
            print(json.dumps(promotion.to_dict(), allow_nan=False, default=str))
        else:
            with _progress(f"promote {args.ref}") as p:
                print(api.promote(args.ref, args.alias, compare=args.compare, targets=args.targets, progress=p))
    elif cmd == "push":
        with _progress(f"push {args.ref}") as p:
            print(api.push(args.ref, args.registry, progress=p))
    elif cmd == "export":
        print(api.export(args.ref, args.format, registry=args.registry, output=args.output))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pyml", description="pyml_jupyter: check, register, build, serve models.")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="serve a model locally with the serving runtime (no Docker)")
    serve.add_argument("model", help="NAME[/VERSION], models:/NAME/VERSION, or a package folder")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8080)
    serve.add_argument("--workers", type=int, default=1)
    sub.add_parser("models", help="list registered models")
    build = sub.add_parser("build", help="build a model version's Docker image")
    build.add_argument("ref")
    build.add_argument("--base-image")
    build.add_argument("--no-cache", action="store_true", help="rebuild every layer")
    deploy = sub.add_parser("deploy", help="run a model version as a container")
    deploy.add_argument("ref")
    deploy.add_argument("--port", type=int)
    deploy.add_argument("--base-image")
    deploy.add_argument("--memory", help="memory limit, e.g. 512m or 8g (default: 4g)")
    deploy.add_argument("--pids-limit", type=int, help="processes and threads the container may run (default: 1024)")
    deploy.add_argument("--allowed-hosts", help="comma-separated Host names to serve besides loopback and its own")
    deploy.add_argument("--token", action="store_true", help="require a random bearer token")
    sub.add_parser("deployments", help="list running deployments")
    stop = sub.add_parser("stop", help="stop a deployment")
    stop.add_argument("ref")
    prune = sub.add_parser("prune", help="remove a model's old Docker images")
    prune.add_argument("name")
    prune.add_argument("--keep", type=int, default=1, help="how many of the newest images to keep (default 1)")
    test = sub.add_parser("test", help="compare a target's predictions with in-process ones on the stored sample")
    test.add_argument("ref")
    test.add_argument("--target", choices=list(api.TEST_TARGETS), default="container")
    test.add_argument("--all", action="store_true", help="every target: fresh process, container (HTTP, gRPC), Spark")
    test.add_argument("--json", action="store_true", help="print the report (or the error) as one JSON line")
    batch = sub.add_parser("batch", help="score a SQL query on Spark into a table")
    batch.add_argument("ref")
    batch.add_argument("--query", required=True)
    batch.add_argument("--output", required=True)
    batch.add_argument("--keep", help="comma-separated input columns to keep beside the predictions (default: all)")
    batch.add_argument("--mode", choices=["error", "overwrite", "append"], default="error")
    promote = sub.add_parser("promote", help="point an alias at a version once its contract and parity gates pass")
    promote.add_argument("ref")
    promote.add_argument("--alias", default="champion")
    promote.add_argument("--compare", help="also compare predictions with this alias or version")
    promote.add_argument("--targets", choices=list(api.TEST_TARGETS), default="all",
                         help="where the parity gate predicts the stored sample (default: all targets)")
    promote.add_argument("--json", action="store_true", help="print the promotion (or the error) as one JSON line")
    push = sub.add_parser("push", help="push a version's image to a registry")
    push.add_argument("ref")
    push.add_argument("--registry", required=True, help="HOST[:PORT][/PATH]")
    export = sub.add_parser("export", help="write KServe or Kubernetes manifests for a version's image")
    export.add_argument("ref")
    export.add_argument("--format", choices=["kserve", "kubernetes"], default="kserve")
    export.add_argument("--registry", help="HOST[:PORT][/PATH] (default: where the image was pushed)")
    export.add_argument("--output", help="file or folder (default: NAME-vVERSION.FORMAT.yaml here)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return _run(args)
    except PymlError as e:
        if getattr(args, "json", False):
            print(json.dumps({**e.to_dict(), "status": e.status}, default=str))
        else:
            print(f"error: {with_hint(e, HINTS)}", file=sys.stderr)
        return 2
    except Exception as e:  # noqa: BLE001 - a library's own error: its text may carry a URI's credentials
        print(f"error: {redact(f'{type(e).__name__}: {e}')}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
