"""``python -m pyml_jupyter.serving PACKAGE_DIR [--host H] [--port P] [--workers N|auto] [--grpc-port P]
[--grpc-uds PATH]``: serve a model package over HTTP (and gRPC).

Defaults come from the environment (``PYML_PACKAGE``, ``PYML_HOST``, ``PYML_PORT``, ``PYML_WORKERS``,
``PYML_MODEL_NAME``, ``PYML_MODEL_VERSION``, ``PYML_RUN_ID``, ``PYML_MAX_BODY_BYTES``, ``PYML_HTTP``,
``PYML_LOOP``, ``PYML_LOG_LEVEL``, ``PYML_GRPC_PORT``, ``PYML_GRPC_UDS``, ``PYML_MAX_BATCH_ROWS``;
``PYML_PREDICT_THREAD``, ``PYML_MAX_BATCH_BYTES``, ``PYML_ALLOWED_HOSTS`` and ``PYML_TOKEN`` are read by the app),
so a container can be configured with ``-e`` flags alone. Works with only this folder on the path (no
``pyml_jupyter/__init__.py``): it is how the model image runs it.
"""

from __future__ import annotations

import argparse
import os
import sys


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    return int(value) if value else default


def _workers(value: str) -> int | str:
    if value == "auto":
        return value
    try:
        return int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number of workers nor 'auto'") from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pyml_jupyter.serving",
                                     description="Serve a pyml_jupyter model package over HTTP.",
                                     epilog="Access: PYML_ALLOWED_HOSTS (Host names served besides loopback and this "
                                            "machine's own; .example.com for subdomains, * for any) and PYML_TOKEN "
                                            "(a bearer token every route but the health probes needs).")
    parser.add_argument("package", nargs="?", default=os.environ.get("PYML_PACKAGE"),
                        help="model package folder (default: $PYML_PACKAGE)")
    parser.add_argument("--host", default=os.environ.get("PYML_HOST", "127.0.0.1"),
                        help="address to bind (default: $PYML_HOST or 127.0.0.1; 0.0.0.0 in a container)")
    parser.add_argument("--port", type=int, default=_env_int("PYML_PORT", 8080), help="default: $PYML_PORT or 8080")
    parser.add_argument("--workers", type=_workers, default=os.environ.get("PYML_WORKERS") or "1",
                        help="worker processes, each with its own copy of the model and batcher; 'auto': one per "
                             "CPU the process may use, cgroup quota aware (default: $PYML_WORKERS or 1)")
    parser.add_argument("--grpc-port", type=int, default=_env_int("PYML_GRPC_PORT", 0) or None,
                        help="also serve the Open Inference Protocol over gRPC on this TCP port, on --host "
                             "(default: $PYML_GRPC_PORT; none)")
    parser.add_argument("--grpc-uds", default=os.environ.get("PYML_GRPC_UDS") or None, metavar="PATH",
                        help="also serve gRPC on this Unix domain socket (default: $PYML_GRPC_UDS; none)")
    parser.add_argument("--max-batch-rows", type=int, default=_env_int("PYML_MAX_BATCH_ROWS", -1),
                        help="rows per predict call when batching concurrent requests; 0 turns batching off "
                             "(default: $PYML_MAX_BATCH_ROWS or 256; only models proven batch invariant batch)")
    parser.add_argument("--model-name", default=os.environ.get("PYML_MODEL_NAME"),
                        help="name in /metadata and the /v2/models/{name} routes (default: the class name)")
    parser.add_argument("--model-version", default=os.environ.get("PYML_MODEL_VERSION"))
    parser.add_argument("--run-id", default=os.environ.get("PYML_RUN_ID"))
    parser.add_argument("--max-body-bytes", type=int, default=_env_int("PYML_MAX_BODY_BYTES", 0) or None,
                        help="largest request body accepted (default: $PYML_MAX_BODY_BYTES or 20 MiB)")
    parser.add_argument("--http", default=os.environ.get("PYML_HTTP", "auto"), choices=["auto", "h11", "httptools"],
                        help="HTTP parser (default: $PYML_HTTP or auto: httptools if installed, else h11)")
    parser.add_argument("--loop", default=os.environ.get("PYML_LOOP", "auto"), choices=["auto", "asyncio", "uvloop"],
                        help="event loop (default: $PYML_LOOP or auto: uvloop if installed, else asyncio)")
    parser.add_argument("--log-level", default=os.environ.get("PYML_LOG_LEVEL", "info"),
                        choices=["critical", "error", "warning", "info", "debug", "trace"])
    args = parser.parse_args(argv)
    if not args.package:
        parser.error("give the model package folder (or set PYML_PACKAGE)")
    from .loader import CONTRACT_FILE

    if not os.path.isfile(os.path.join(args.package, CONTRACT_FILE)):
        parser.error(f"{args.package} is not a model package (it has no {CONTRACT_FILE})")
    if args.workers != "auto" and args.workers < 1:
        parser.error("--workers must be at least 1 (or auto)")

    from .server import run  # imports uvicorn: after argument errors, which need none of it

    run(args.package, host=args.host, port=args.port, workers=args.workers, model_name=args.model_name,
        model_version=args.model_version, run_id=args.run_id, max_body_bytes=args.max_body_bytes,
        http=args.http, loop=args.loop, log_level=args.log_level, grpc_port=args.grpc_port,
        grpc_uds=args.grpc_uds, max_batch_rows=None if args.max_batch_rows < 0 else args.max_batch_rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
