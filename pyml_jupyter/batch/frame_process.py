"""Score a pickled DataFrame on a short-lived local Spark session: ``python -m pyml_jupyter.batch.frame_process
PACKAGE OUT --sample IN``.

The parity table runs this in a child process, so neither the notebook's kernel nor the Jupyter server hosts
a JVM for a test: the session (``local[1]``, an in-memory catalog in a temporary folder, so no Derby
metastore is locked) lives as long as the process. The predictions are written with pickle, as
:mod:`pyml_jupyter.serving.offline` writes them; a failure ends with one line saying why on stderr.
"""

from __future__ import annotations

import argparse
import pickle
import sys
import tempfile
import time
from pathlib import Path

from ..errors import PymlError
from .job import predict_frame
from .session import spark_session

SESSION_CONF = {"spark.sql.catalogImplementation": "in-memory", "spark.ui.enabled": "false",
                "spark.sql.shuffle.partitions": "1"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pyml_jupyter.batch.frame_process")
    parser.add_argument("package", help="model package folder")
    parser.add_argument("output", help="file to write the pickled predictions to")
    parser.add_argument("--sample", required=True, help="pickled pandas DataFrame to score")
    args = parser.parse_args(argv)
    with open(args.sample, "rb") as f:
        sample = pickle.load(f)  # noqa: S301 - written by the parent process on this machine
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="pyml-spark-") as home:
        try:
            spark = spark_session(SESSION_CONF, warehouse_dir=Path(home) / "warehouse", master="local[1]")
        except PymlError as exc:
            print(exc.message, file=sys.stderr)
            return 1
        ready = time.perf_counter()
        try:
            prediction = predict_frame(args.package, sample, spark=spark)
        except PymlError as exc:
            print(exc.message, file=sys.stderr)
            return 1
        finally:
            done = time.perf_counter()
            spark.stop()
    with open(args.output, "wb") as f:
        pickle.dump({"prediction": prediction, "load_s": ready - started, "predict_s": done - ready}, f)
    return 0


if __name__ == "__main__":
    sys.exit(main())
