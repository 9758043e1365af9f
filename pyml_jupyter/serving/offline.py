"""Predict with a model package in this process: ``python -m pyml_jupyter.serving.offline PACKAGE OUT [--sample IN]``.

The contract check and the parity table run this in a fresh interpreter, in an empty working directory, to
prove the package predicts the same without any of the notebook's state. The input is the package's stored
sample, or the pickled one ``--sample`` names; the prediction is written with pickle (trusted files on the
same machine, written by the caller) so dtypes survive exactly.
"""

from __future__ import annotations

import argparse
import pickle
import sys
import time

from .loader import load_package


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pyml_jupyter.serving.offline")
    parser.add_argument("package", help="model package folder")
    parser.add_argument("output", help="file to write the pickled prediction to")
    parser.add_argument("--sample", help="pickled input to predict (default: the package's stored sample)")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    model = load_package(args.package)
    loaded = time.perf_counter()
    if args.sample:
        with open(args.sample, "rb") as f:
            sample = pickle.load(f)  # noqa: S301 - written by the caller on this machine
    else:
        sample = model.info.read_sample()
    prediction = model.predict(sample)
    done = time.perf_counter()
    with open(args.output, "wb") as f:
        pickle.dump({"prediction": prediction, "load_s": loaded - started, "predict_s": done - loaded}, f)
    return 0


if __name__ == "__main__":
    sys.exit(main())
