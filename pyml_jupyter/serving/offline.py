"""Predict with a model package in this process: ``python -m pyml_jupyter.serving.offline PACKAGE OUT``.

The contract check runs this in a fresh interpreter, in an empty working directory, to prove the package
predicts the same without any of the notebook's state; promotion runs it to score another version on a
candidate's sample (``--sample FILE``, a pickled input). The prediction is written with pickle (a trusted file
on the same machine) so dtypes survive exactly, with the process's peak memory (``max_rss_bytes``).
"""

from __future__ import annotations

import argparse
import pickle
import resource
import sys
import time

from .loader import load_package


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pyml_jupyter.serving.offline")
    parser.add_argument("package", help="model package folder")
    parser.add_argument("output", help="file to write the pickled prediction to")
    parser.add_argument("--sample", help="a pickled input to predict (default: the package's stored sample)")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    model = load_package(args.package)
    loaded = time.perf_counter()
    if args.sample:
        with open(args.sample, "rb") as f:
            sample = pickle.load(f)
    else:
        sample = model.info.read_sample()
    prediction = model.predict(sample)
    done = time.perf_counter()
    max_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB
    with open(args.output, "wb") as f:
        pickle.dump({"prediction": prediction, "load_s": loaded - started, "predict_s": done - loaded,
                     "max_rss_bytes": max_rss}, f)
    return 0


if __name__ == "__main__":
    sys.exit(main())
