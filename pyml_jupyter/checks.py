"""The contract check: run a model class on sample inputs before anything ships.

:func:`run_check` captures the class into a package (in a temporary folder), exercises it in this process and
in a fresh Python process, and returns a :class:`ContractReport`: named checks, each pass / warn / fail with a
message that says what to fix. ``register()`` refuses a model whose report is not ``ok``.
"""

from __future__ import annotations

import html
import inspect
import json
import os
import pickle
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import pandas as pd

from .capture import capture_class
from .errors import CaptureError
from .package import RUNTIME_DISTRIBUTIONS, save_artifacts, set_contract_field, write_package, write_requirements
from .requirements import Requirements, resolve_requirements
from .serving.artifacts import load_artifacts
from .serving.contract import constructor_takes_artifacts, model_kind
from .serving.schema import DataFrameSchema, SchemaError, TensorSchema

__all__ = ["CheckResult", "ContractReport", "run_check", "predictions_equal"]

PASS, WARN, FAIL, SKIP = "pass", "warn", "fail", "skipped"
_ICONS = {PASS: "✓", WARN: "!", FAIL: "✗", SKIP: "–"}
_COLORS = {PASS: "#1a7f37", WARN: "#9a6700", FAIL: "#cf222e", SKIP: "#6e7781"}

FLOAT_RTOL = 1e-9
FLOAT_ATOL = 1e-12


@dataclass
class CheckResult:
    """One named check: its status and a message that says what to fix."""

    name: str
    status: str
    message: str = ""

    def to_dict(self) -> dict[str, str]:
        return {"name": self.name, "status": self.status, "message": self.message}


@dataclass
class ContractReport:
    """The outcome of :func:`run_check`. ``ok`` is true when no check failed (warnings allowed)."""

    class_name: str
    kind: str | None
    checks: list[CheckResult] = field(default_factory=list)
    input_schema: DataFrameSchema | TensorSchema | None = None
    output_schema: DataFrameSchema | TensorSchema | None = None
    requirements: list[str] = field(default_factory=list)
    latency: dict[str, float] = field(default_factory=dict)
    package_dir: Path | None = None
    sample: Any = field(default=None, repr=False)  # the sample as the model saw it (schema enforced)
    output: Any = field(default=None, repr=False)  # the model's prediction on it, in this process

    @property
    def ok(self) -> bool:
        return not any(c.status == FAIL for c in self.checks)

    @property
    def status(self) -> str:
        return "passed" if self.ok else "failed"

    @property
    def failures(self) -> list[CheckResult]:
        return [c for c in self.checks if c.status == FAIL]

    def add(self, name: str, status: str, message: str = "") -> CheckResult:
        result = CheckResult(name, status, message)
        self.checks.append(result)
        return result

    def get(self, name: str) -> CheckResult:
        return next(c for c in self.checks if c.name == name)

    def summary(self) -> str:
        """One paragraph: what failed and how to fix it."""
        if self.ok:
            warns = [c for c in self.checks if c.status == WARN]
            extra = f" ({len(warns)} warning{'s' * (len(warns) != 1)})" if warns else ""
            return f"{self.class_name} passed the contract check{extra}."
        lines = [f"{self.class_name} failed the contract check:"]
        lines += [f"- {c.name}: {c.message}" for c in self.failures]
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {
            "class_name": self.class_name,
            "kind": self.kind,
            "ok": self.ok,
            "status": self.status,
            "checks": [c.to_dict() for c in self.checks],
            "input_schema": self.input_schema.to_dict() if self.input_schema else None,
            "output_schema": self.output_schema.to_dict() if self.output_schema else None,
            "requirements": self.requirements,
            "latency": self.latency,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def __repr__(self) -> str:
        width = max((len(c.name) for c in self.checks), default=10)
        lines = [f"ContractReport({self.class_name}): {self.status.upper()}"]
        for c in self.checks:
            lines.append(f"  {_ICONS[c.status]} {c.name.ljust(width)}  {c.status:<7} {c.message}".rstrip())
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        rows = "".join(
            f"<tr><td style='color:{_COLORS[c.status]};font-weight:bold'>{_ICONS[c.status]} {c.status}</td>"
            f"<td><code>{html.escape(c.name)}</code></td><td style='text-align:left'>{html.escape(c.message)}</td></tr>"
            for c in self.checks
        )
        color = _COLORS[PASS if self.ok else FAIL]
        return (
            f"<div class='pyml-contract-report'><b>Contract check for <code>{html.escape(self.class_name)}</code>: "
            f"<span style='color:{color}'>{self.status}</span></b>"
            f"<table><thead><tr><th>status</th><th>check</th><th style='text-align:left'>details</th></tr></thead>"
            f"<tbody>{rows}</tbody></table></div>"
        )


# ---------------------------------------------------------------------------------------------------------------
# comparing predictions


def predictions_equal(expected: Any, actual: Any) -> tuple[bool, str]:
    """Exact for ints, strings and bools; within a tight tolerance for floats. Returns (equal, why not)."""
    if isinstance(expected, pd.DataFrame):
        if not isinstance(actual, pd.DataFrame):
            return False, f"expected a DataFrame, got {type(actual).__name__}"
        if list(expected.columns) != list(actual.columns):
            return False, f"columns differ: {list(expected.columns)} vs {list(actual.columns)}"
        if len(expected) != len(actual):
            return False, f"{len(expected)} rows vs {len(actual)} rows"
        for col in expected.columns:
            ok, why = _arrays_equal(expected[col].to_numpy(), actual[col].to_numpy())
            if not ok:
                return False, f"column '{col}': {why}"
        return True, ""
    if isinstance(expected, Mapping):
        if not isinstance(actual, Mapping) or set(expected) != set(actual):
            return False, "outputs have different names"
        for name in expected:
            ok, why = _arrays_equal(np.asarray(expected[name]), np.asarray(actual[name]))
            if not ok:
                return False, f"output '{name}': {why}"
        return True, ""
    return False, f"unsupported output type {type(expected).__name__}"


def _arrays_equal(a: np.ndarray, b: np.ndarray) -> tuple[bool, str]:
    if a.shape != b.shape:
        return False, f"shape {a.shape} vs {b.shape}"
    if a.dtype.kind in "fc" or b.dtype.kind in "fc":
        try:
            fa, fb = a.astype(float), b.astype(float)
        except (TypeError, ValueError):
            return False, "non-numeric values where floats were expected"
        if not np.allclose(fa, fb, rtol=FLOAT_RTOL, atol=FLOAT_ATOL, equal_nan=True):
            diff = np.nanmax(np.abs(fa - fb)) if fa.size else 0.0
            return False, f"values differ by up to {diff:.3g}"
        return True, ""
    eq = np.array([_same_value(x, y) for x, y in zip(a.ravel().tolist(), b.ravel().tolist())], dtype=bool)
    if not eq.all():
        i = int(np.argmin(eq))
        return False, f"{int((~eq).sum())} value(s) differ, first at position {i}: {a.ravel()[i]!r} vs {b.ravel()[i]!r}"
    return True, ""


def _is_missing(value: Any) -> bool:
    missing = pd.isna(value)
    return missing if isinstance(missing, (bool, np.bool_)) else False  # an array-like value is never missing


def _same_value(x: Any, y: Any) -> bool:
    """Two cells of an object column: both missing (None, NaN, NaT, pd.NA), or equal."""
    x_missing, y_missing = _is_missing(x), _is_missing(y)
    if x_missing or y_missing:
        return bool(x_missing and y_missing)
    try:
        return bool(x == y)
    except (TypeError, ValueError):  # cells holding arrays: `==` is elementwise
        try:
            return bool(np.array_equal(np.asarray(x), np.asarray(y)))
        except (TypeError, ValueError):
            return False


# ---------------------------------------------------------------------------------------------------------------
# helpers for the individual checks


def _copy(data: Any) -> Any:
    if isinstance(data, pd.DataFrame):
        return data.copy(deep=True)
    return {k: np.array(v, copy=True) for k, v in data.items()}


def _same_input(a: Any, b: Any) -> bool:
    if isinstance(a, pd.DataFrame):
        return a.equals(b) and list(a.dtypes) == list(b.dtypes) and a.index.equals(b.index)
    return set(a) == set(b) and all(
        np.asarray(a[k]).dtype == np.asarray(b[k]).dtype and np.array_equal(a[k], b[k], equal_nan=a[k].dtype.kind in "fc")
        for k in a
    )


def _n_rows(data: Any) -> int:
    if isinstance(data, pd.DataFrame):
        return len(data)
    firsts = [np.asarray(v).shape[0] for v in data.values() if np.ndim(v) > 0]
    return firsts[0] if firsts else 0


def _slice(data: Any, start: int, stop: int) -> Any:
    if isinstance(data, pd.DataFrame):
        return data.iloc[start:stop]
    return {k: np.asarray(v)[start:stop] for k, v in data.items()}


def _concat(parts: list[Any]) -> Any:
    if isinstance(parts[0], pd.DataFrame):
        return pd.concat(parts)
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def _signature_problem(model_class: type) -> str | None:
    try:
        init_params = list(inspect.signature(model_class.__init__).parameters.values())[1:]
        predict_params = list(inspect.signature(model_class.predict).parameters.values())[1:]
    except (TypeError, ValueError) as e:
        return f"cannot read the signatures of {model_class.__name__}: {e}"
    required_init = [p for p in init_params if p.default is p.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if len(required_init) > 1:
        names = ", ".join(p.name for p in required_init)
        return f"__init__ takes ({names}); it must take nothing besides self, or one argument: the artifacts mapping"
    if model_class.predict is getattr(model_class.__mro__[1], "predict", None) and model_class.__mro__[1].__module__.endswith("contract"):
        return f"{model_class.__name__} does not implement predict()"
    positional = [p for p in predict_params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL)]
    required = [p for p in positional if p.default is p.empty and p.kind is not p.VAR_POSITIONAL]
    if not positional or len(required) > 1:
        return "predict must take exactly one argument besides self: the input (a DataFrame or a dict of arrays)"
    return None


def _perturb_type(data: Any, schema: DataFrameSchema | TensorSchema) -> tuple[Any, str] | None:
    """A copy of the sample with one column (tensor) given a wrong type, and that column's name."""
    if isinstance(schema, DataFrameSchema):
        for col in schema.columns:
            bad = data.copy()
            if col.dtype == "string":
                bad[col.name] = pd.Series([[1, 2]] * len(bad), index=bad.index, dtype=object)
            else:
                bad[col.name] = pd.Series(["not a number"] * len(bad), index=bad.index, dtype=object)
            return bad, col.name
        return None
    for spec in schema.tensors:
        bad = dict(data)
        bad[spec.name] = np.full(np.shape(data[spec.name]), "not a number", dtype=object)
        return bad, spec.name
    return None


def _drop_first(data: Any, schema: DataFrameSchema | TensorSchema) -> tuple[Any, str] | None:
    names = schema.names
    if not names:
        return None
    if isinstance(data, pd.DataFrame):
        return data.drop(columns=[names[0]]), names[0]
    return {k: v for k, v in data.items() if k != names[0]}, names[0]


def _agrees(output: Any, produce: Callable[[], Any], what: str) -> tuple[bool, str]:
    """Whether ``produce()`` predicts the same as ``output``, and why not (an exception counts as a difference)."""
    try:
        return predictions_equal(output, produce())
    except Exception as e:  # noqa: BLE001 - the user's predict failed: the check reports it
        return False, f"{what} raised {type(e).__name__}: {e}"


def _timed(fn: Callable[[], Any], repeat: int) -> list[float]:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


class _FreshProcess:
    """The package loaded in a new interpreter, in an empty directory, predicting its sample.

    Started at construction and awaited by :meth:`result`, so that the check's work in this process goes on
    while the new interpreter starts and imports the model's libraries.
    """

    def __init__(self, package_dir: Path, timeout: float) -> None:
        self._cwd = tempfile.TemporaryDirectory(prefix="pyml-fresh-")
        self._out = Path(self._cwd.name) / "prediction.pkl"
        self._timeout = timeout
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONSTARTUP")}
        self._started = time.perf_counter()
        self._process = subprocess.Popen(
            [sys.executable, "-m", "pyml_jupyter.serving.offline", str(package_dir.resolve()), str(self._out)],
            cwd=self._cwd.name, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )
        self._stderr, self._elapsed, self._timed_out = "", 0.0, False
        self._waiter = threading.Thread(target=self._wait, daemon=True)
        self._waiter.start()

    def _wait(self) -> None:
        try:
            _, self._stderr = self._process.communicate(timeout=self._timeout)
        except subprocess.TimeoutExpired:
            self._timed_out = True
            self._process.kill()
            _, self._stderr = self._process.communicate()
        self._elapsed = time.perf_counter() - self._started

    def result(self) -> tuple[Any, float]:
        """The prediction and the seconds the new process took; raises ``RuntimeError`` saying why it failed."""
        try:
            self._waiter.join()
            if self._timed_out:
                raise RuntimeError(f"no prediction within {self._timeout:.0f} s")
            if self._process.returncode != 0:
                tail = "\n".join((self._stderr or "").strip().splitlines()[-6:])
                raise RuntimeError(tail or f"exit code {self._process.returncode}")
            with open(self._out, "rb") as f:
                return pickle.load(f)["prediction"], self._elapsed
        finally:
            self.close()

    def close(self) -> None:
        if self._process.poll() is None:
            self._process.kill()
            self._waiter.join()
        self._cwd.cleanup()


# ---------------------------------------------------------------------------------------------------------------
# the check


class _Stop(Exception):
    """A check failed in a way that makes the following ones meaningless."""


def run_check(
    model_class: type,
    sample: Any,
    artifacts: Mapping[str, Any] | None = None,
    *,
    namespace: Mapping[str, Any] | None = None,
    package_dir: Path | None = None,
    fresh_process_timeout: float = 300.0,
) -> ContractReport:
    """Check ``model_class`` against the contract on ``sample``; the package is written to ``package_dir``.

    With ``package_dir=None`` a temporary folder is used (``report.package_dir``), removed with the report.
    """
    name = getattr(model_class, "__name__", repr(model_class))
    kind = model_kind(model_class)
    report = ContractReport(class_name=name, kind=kind)
    try:
        _check(report, model_class, sample, artifacts or {}, namespace, package_dir, fresh_process_timeout)
    except _Stop:
        pass
    for skipped in _ALL_CHECKS:
        if not any(c.name == skipped for c in report.checks):
            report.add(skipped, SKIP, "not run: an earlier check failed")
    order = {n: i for i, n in enumerate(_ALL_CHECKS)}
    report.checks.sort(key=lambda c: order.get(c.name, len(order)))
    return report


_ALL_CHECKS = [
    "contract", "capture", "construct", "input_schema", "output_type", "rows_aligned", "output_schema",
    "no_mutation", "deterministic", "batch_invariance", "empty_input", "schema_rejects_bad_input",
    "requirements_pinned", "fresh_process", "latency",
]


def _check(report, model_class, sample, artifacts, namespace, package_dir, timeout) -> None:  # noqa: C901
    kind = report.kind
    # 1. the class follows the contract
    if kind is None:
        report.add("contract", FAIL, f"{report.class_name} must subclass pyml_jupyter.DataFrameModel or "
                   "pyml_jupyter.TensorModel (e.g. `class MyModel(DataFrameModel): ...`).")
        raise _Stop
    problem = _signature_problem(model_class)
    if problem:
        report.add("contract", FAIL, problem)
        raise _Stop
    takes_artifacts = constructor_takes_artifacts(model_class)
    if kind == "dataframe" and not isinstance(sample, pd.DataFrame):
        report.add("contract", FAIL, f"the sample for a DataFrameModel must be a pandas DataFrame, got {type(sample).__name__}.")
        raise _Stop
    if kind == "tensor" and not (isinstance(sample, Mapping) and all(isinstance(v, np.ndarray) for v in sample.values())):
        report.add("contract", FAIL, "the sample for a TensorModel must be a dict of numpy arrays, e.g. {'x': np.zeros((2, 3))}.")
        raise _Stop
    if artifacts and not takes_artifacts:
        report.add("contract", FAIL, f"artifacts were given ({', '.join(artifacts)}) but {report.class_name}.__init__ "
                   "takes no argument to receive them: define `def __init__(self, artifacts): ...`.")
        raise _Stop
    if _n_rows(sample) == 0:
        report.add("contract", FAIL, "the sample has 0 rows: give a few representative rows.")
        raise _Stop
    report.add("contract", PASS, f"{kind} model; constructor {'takes artifacts' if takes_artifacts else 'takes no arguments'}")

    # capture: source, helpers, artifacts
    if package_dir:
        package_dir = Path(package_dir)
    else:  # a temporary package lives as long as its report (register() logs it from there)
        package_dir = Path(tempfile.mkdtemp(prefix="pyml-package-"))
        weakref.finalize(report, shutil.rmtree, str(package_dir), ignore_errors=True)
    report.package_dir = package_dir
    try:
        captured = capture_class(model_class, namespace, artifact_names=list(artifacts))
    except CaptureError as e:
        report.add("capture", FAIL, e.message)
        raise _Stop
    try:
        saved = save_artifacts(artifacts, package_dir / "artifacts")
        loaded_artifacts = load_artifacts(package_dir / "artifacts", saved.specs)
    except Exception as e:  # noqa: BLE001 - any serialization failure is the user's to fix
        report.add("capture", FAIL, f"an artifact cannot be saved and loaded back: {e}")
        raise _Stop
    notebook_classes = [n for n, spec in saved.specs.items() if "__main__" in spec.get("modules", ())]
    if notebook_classes:
        report.add("capture", FAIL, f"artifact(s) {', '.join(notebook_classes)} contain objects of a class defined in the "
                   "notebook, which a pickle can only find in the notebook itself. Move that class into an importable "
                   "module (a package installed with pip), or create the object in the model's constructor.")
        raise _Stop
    helpers = f"; helpers: {', '.join(captured.helpers)}" if captured.helpers else ""
    report.add("capture", PASS, f"{len(captured.source.splitlines())} lines of source{helpers}; "
               f"{len(saved.specs)} artifact(s)")

    # 2. constructs from its (saved and reloaded) artifacts
    try:
        model = model_class(loaded_artifacts) if takes_artifacts else model_class()
    except Exception as e:  # noqa: BLE001
        report.add("construct", FAIL, f"{report.class_name}(artifacts) raised {type(e).__name__}: {e}")
        raise _Stop
    report.add("construct", PASS, "constructed from artifacts saved and loaded back" if artifacts else "constructed")

    # 5a. input schema: declared or inferred; the sample must conform
    schema_cls = DataFrameSchema if kind == "dataframe" else TensorSchema
    try:
        declared_in = getattr(model_class, "input_schema", None)
        input_schema = schema_cls.from_spec(declared_in) if declared_in is not None else schema_cls.infer(sample)
        report.input_schema = input_schema
        enforced = input_schema.enforce(sample)
    except SchemaError as e:
        report.add("input_schema", FAIL, f"the sample does not conform to the declared input schema: {e}")
        raise _Stop
    except (TypeError, ValueError) as e:
        report.add("input_schema", FAIL, f"invalid input_schema: {e}")
        raise _Stop
    data = enforced.data
    notes = []
    if enforced.ignored:
        notes.append(f"extra columns ignored: {', '.join(enforced.ignored)}")
    if enforced.casts:
        notes.append("casts: " + "; ".join(enforced.casts))
    origin = "declared" if declared_in is not None else "inferred from the sample"
    report.add("input_schema", PASS, f"{origin}: {input_schema!r}" + (f" ({'; '.join(notes)})" if notes else ""))

    # 3. predict returns the right type
    pristine = _copy(data)
    try:
        output = model.predict(data)
    except Exception as e:  # noqa: BLE001
        report.add("output_type", FAIL, f"predict raised {type(e).__name__} on the sample: {e}")
        raise _Stop
    if kind == "dataframe" and not isinstance(output, pd.DataFrame):
        report.add("output_type", FAIL, f"predict returned {type(output).__module__}.{type(output).__name__}; a DataFrameModel "
                   "must return a pandas DataFrame (e.g. `pd.DataFrame({'score': scores}, index=df.index)`).")
        raise _Stop
    if kind == "tensor" and not (isinstance(output, Mapping) and output and all(isinstance(v, np.ndarray) for v in output.values())):
        report.add("output_type", FAIL, f"predict returned {type(output).__name__}; a TensorModel must return a dict of "
                   "numpy arrays (e.g. `{'probs': probs}`).")
        raise _Stop
    report.sample, report.output = data, output
    report.add("output_type", PASS, "DataFrame" if kind == "dataframe" else "dict of arrays: " + ", ".join(output))

    # 4. rows and index aligned
    n = _n_rows(data)
    if kind == "dataframe":
        if len(output) != n:
            report.add("rows_aligned", FAIL, f"predict returned {len(output)} rows for {n} input rows: return one row per input row.")
        elif not output.index.equals(data.index):
            report.add("rows_aligned", FAIL, "the output's index differs from the input's: build the output with "
                       "`index=df.index` so each prediction stays with its row.")
        else:
            report.add("rows_aligned", PASS, f"{n} rows in, {n} rows out, same index")
    else:
        bad = [k for k, v in output.items() if v.ndim == 0 or v.shape[0] != n]
        if bad:
            report.add("rows_aligned", FAIL, f"output(s) {', '.join(bad)} do not have {n} rows on their first dimension.")
        else:
            report.add("rows_aligned", PASS, f"every output has {n} rows")

    # 5b. output schema: declared or inferred
    try:
        declared_out = getattr(model_class, "output_schema", None)
        if declared_out is not None:
            output_schema = schema_cls.from_spec(declared_out)
            problems = output_schema.problems(output)
            if problems:
                detail = "; ".join(f"{p['field']}: {p['error']}" for p in problems)
                report.add("output_schema", FAIL, f"the output does not match the declared output_schema: {detail}")
            else:
                report.add("output_schema", PASS, f"declared: {output_schema!r}")
        else:
            output_schema = schema_cls.infer(output)
            report.add("output_schema", PASS, f"inferred: {output_schema!r}")
        report.output_schema = output_schema
    except (SchemaError, TypeError, ValueError) as e:
        report.add("output_schema", FAIL, f"cannot derive an output schema: {e}")
        raise _Stop

    # 6. no mutation
    if _same_input(pristine, data):
        report.add("no_mutation", PASS, "the input is unchanged after predict")
    else:
        report.add("no_mutation", FAIL, "predict modified its input in place: work on a copy (`df = df.copy()`) "
                   "or build new columns in a new DataFrame.")
        data = pristine

    # The package on disk (its requirements are filled in below), then 11. the fresh-process round trip: the new
    # interpreter starts and imports the model's libraries while the checks below run in this one.
    write_package(
        package_dir, captured=captured, artifacts=saved, requirements=Requirements(), sample=data,
        input_schema=input_schema, output_schema=output_schema, takes_artifacts=takes_artifacts,
    )
    fresh = _FreshProcess(package_dir, timeout)
    try:
        # 7. determinism
        same, why = _agrees(output, lambda: model.predict(_copy(data)), "the second call")
        if same:
            report.add("deterministic", PASS, "two calls on the same input agree")
        else:
            report.add("deterministic", FAIL, f"two calls on the same input disagree ({why}): fix random seeds "
                       "(e.g. `np.random.default_rng(0)`) or remove state that changes between calls.")

        # 8. batch invariance
        same, why = _agrees(output, lambda: _concat([model.predict(_slice(data, i, i + 1)) for i in range(n)]),
                            "predicting one row at a time")
        set_contract_field(package_dir, "batch_invariant", bool(same) and n > 1)  # the server batches only these
        if same:
            report.add("batch_invariance", PASS, "all rows at once equal one row at a time")
        else:
            report.add("batch_invariance", WARN, f"predicting rows one at a time differs from all at once ({why}); "
                       "online requests carry few rows, so served predictions may differ from batch ones.")

        # 9. empty input
        try:
            empty_out = model.predict(_slice(data, 0, 0))
            rows = _n_rows(empty_out) if isinstance(empty_out, (pd.DataFrame, Mapping)) else None
            if rows == 0:
                report.add("empty_input", PASS, "0 rows in, 0 rows out")
            else:
                report.add("empty_input", FAIL, f"0 rows in gave {rows if rows is not None else type(empty_out).__name__} "
                           "rows out: return an empty result for an empty input.")
        except Exception as e:  # noqa: BLE001
            report.add("empty_input", WARN, f"0 rows raise {type(e).__name__}: {str(e).rstrip('.')}. Served models will answer empty "
                       "requests with this error; consider returning an empty result.")

        # 10. the schema rejects a missing and a wrongly typed column, naming it
        messages, failed = [], []
        for label, perturbed in (("missing", _drop_first(data, input_schema)), ("wrongly typed", _perturb_type(data, input_schema))):
            if perturbed is None:
                continue
            bad, col = perturbed
            try:
                input_schema.enforce(bad)
                failed.append(f"a {label} '{col}' was accepted")
            except SchemaError as e:
                if any(p["field"] == col for p in e.problems):
                    messages.append(f"{label} '{col}' rejected")
                else:
                    failed.append(f"a {label} '{col}' was rejected without naming it: {e}")
        if failed:
            report.add("schema_rejects_bad_input", FAIL, "; ".join(failed))
        else:
            report.add("schema_rejects_bad_input", PASS, "; ".join(messages))

        # 12. requirements pinned
        requirements = resolve_requirements(set(captured.modules) | saved.modules, extra=RUNTIME_DISTRIBUTIONS)
        write_requirements(package_dir, requirements)
        report.requirements = list(requirements.pinned)
        if requirements.unresolved:
            report.add("requirements_pinned", FAIL, f"module(s) {', '.join(sorted(requirements.unresolved))} are "
                       "imported but belong to no installed distribution, so they cannot be installed where the model "
                       "runs: install them as a package (pip install -e ...) or define the code in the notebook.")
        else:
            report.add("requirements_pinned", PASS, ", ".join(requirements.pinned))

        try:
            prediction, fresh_seconds = fresh.result()
            same, why = predictions_equal(output, prediction)
            if same:
                report.add("fresh_process", PASS, f"the package reloaded in a new Python process predicts the same "
                           f"({fresh_seconds:.1f} s)")
            else:
                report.add("fresh_process", FAIL, f"the package reloaded in a new Python process predicts differently: "
                           f"{why}. The model depends on notebook state that was not captured.")
        except Exception as e:  # noqa: BLE001
            report.add("fresh_process", FAIL, f"the package fails to load or predict in a new Python process: {e}")
    finally:
        fresh.close()

    # 13. latency (informational)
    batch_times = _timed(lambda: model.predict(_copy(data)), repeat=max(5, min(50, 200 // max(n, 1))))
    row_times = _timed(lambda: model.predict(_slice(data, 0, 1)), repeat=20)
    report.latency = {
        "batch_rows": n,
        "batch_p50_ms": float(np.percentile(batch_times, 50) * 1e3),
        "batch_p99_ms": float(np.percentile(batch_times, 99) * 1e3),
        "row_p50_ms": float(np.percentile(row_times, 50) * 1e3),
        "row_p99_ms": float(np.percentile(row_times, 99) * 1e3),
    }
    lat = report.latency
    report.add("latency", PASS, f"batch of {n}: p50 {lat['batch_p50_ms']:.2f} ms, p99 {lat['batch_p99_ms']:.2f} ms; "
               f"one row: p50 {lat['row_p50_ms']:.2f} ms, p99 {lat['row_p99_ms']:.2f} ms")
