"""The checks, one function each, in the order :data:`STEPS` runs them.

Each step reads and extends one :class:`CheckRun` (the model, the sample as the model sees it, its output, the
schemas, the package being written) and adds its result to the report; a step raises :class:`Stop` when the
checks after it would be meaningless.
"""

from __future__ import annotations

import inspect
import shutil
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import pandas as pd

from .. import tempdirs
from ..errors import CaptureError
from ..package import PackageDraft, capture_package, set_contract_field
from ..parity import compare
from ..serving.contract import constructor_takes_artifacts
from ..serving.schema import DataFrameSchema, SchemaError, TensorSchema, schema_from_spec
from . import samples
from .fresh_process import TARGET as FRESH_PROCESS, FreshProcess
from .report import FAIL, PASS, WARN, ContractReport

__all__ = ["CheckRun", "Stop", "STEPS", "ALL_CHECKS", "raised", "SAMPLE", "ONE_ROW", "EMPTY"]

# The inputs the checks give the model, as their messages name them.
SAMPLE = "the sample"
ONE_ROW = "one row (the first of the sample)"
EMPTY = "an empty input (0 rows)"
LATENCY_BUDGET_S = 2.0
"""Seconds each latency measurement may take: a slow model is timed fewer times, never for minutes."""


def raised(error: BaseException, limit: int = 300) -> str:
    """``TypeName: message`` of an exception the model raised, shortened, even when its ``str()`` fails."""
    try:
        text = str(error)
    except Exception:  # noqa: BLE001 - a model's exception may have a broken __str__
        text = "<its message cannot be shown>"
    text = " ".join(text.split())
    if len(text) > limit:
        text = text[:limit - 1] + "…"
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


class Stop(Exception):
    """A check failed in a way that makes the following ones meaningless."""


@dataclass
class CheckRun:
    """What the checks share: the inputs of :func:`~pyml_jupyter.checks.run_check` and what the steps learn."""

    report: ContractReport
    model_class: type
    sample: Any
    artifacts: Mapping[str, Any]
    namespace: Mapping[str, Any] | None
    package_dir: Path | None  # None: a temporary folder that lives as long as the report
    timeout: float
    takes_artifacts: bool = False
    package: PackageDraft | None = None
    model: Any = None
    data: Any = None  # the sample as the model sees it (schema enforced)
    pristine: Any = None  # a copy of it taken before predict
    output: Any = None
    fresh: FreshProcess | None = None

    @property
    def kind(self) -> str | None:
        return self.report.kind

    def add(self, name: str, status: str, message: str = "") -> None:
        self.report.add(name, status, message)

    def fail(self, name: str, message: str) -> Stop:
        """Add a failure that stops the check; ``raise run.fail(...)``."""
        self.report.add(name, FAIL, message)
        return Stop()


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


def _agrees(output: Any, produce: Callable[[], Any], what: str, target: str) -> tuple[bool, str]:
    """Whether ``produce()`` predicts the same as ``output``, and why not (an exception counts as a difference)."""
    try:
        parity = compare(output, produce(), target=target)
    except Exception as e:  # noqa: BLE001 - the user's predict failed: the check reports it
        return False, f"{what} raised {raised(e)}"
    return parity.ok, parity.reason()


# ------------------------------------------------------------------------------------------------ the steps


def check_contract(run: CheckRun) -> None:
    """The class subclasses a contract, has the right signatures, and the sample and artifacts fit it."""
    kind, sample, name = run.kind, run.sample, run.report.class_name
    if kind is None:
        raise run.fail("contract", f"{name} must subclass pyml_jupyter.DataFrameModel or "
                       "pyml_jupyter.TensorModel (e.g. `class MyModel(DataFrameModel): ...`).")
    problem = _signature_problem(run.model_class)
    if problem:
        raise run.fail("contract", problem)
    run.takes_artifacts = constructor_takes_artifacts(run.model_class)
    if kind == "dataframe" and not isinstance(sample, pd.DataFrame):
        raise run.fail("contract", "the sample for a DataFrameModel must be a pandas DataFrame, got "
                       f"{type(sample).__name__}.")
    if kind == "tensor" and not (isinstance(sample, Mapping) and all(isinstance(v, np.ndarray) for v in sample.values())):
        raise run.fail("contract", "the sample for a TensorModel must be a dict of numpy arrays, e.g. "
                       "{'x': np.zeros((2, 3))}.")
    if run.artifacts and not run.takes_artifacts:
        raise run.fail("contract", f"artifacts were given ({', '.join(run.artifacts)}) but {name}.__init__ takes no "
                       "argument to receive them: define `def __init__(self, artifacts): ...`.")
    if samples.n_rows(sample) == 0:
        raise run.fail("contract", "the sample has 0 rows: give a few representative rows.")
    run.add("contract", PASS, f"{kind} model; constructor {'takes artifacts' if run.takes_artifacts else 'takes no arguments'}")


def check_capture(run: CheckRun) -> None:
    """The source, its helpers and the artifacts are captured into the package folder."""
    if run.package_dir is None:  # register() logs the package from there
        run.package_dir = tempdirs.make("pyml-package-")
        weakref.finalize(run.report, shutil.rmtree, str(run.package_dir), ignore_errors=True)
    run.report.package_dir = run.package_dir
    try:
        run.package = capture_package(run.model_class, run.artifacts, run.package_dir, namespace=run.namespace)
    except CaptureError as e:
        raise run.fail("capture", e.message)
    captured = run.package.captured
    helpers = f"; helpers: {', '.join(captured.helpers)}" if captured.helpers else ""
    run.add("capture", PASS, f"{len(captured.source.splitlines())} lines of source{helpers}; "
            f"{len(run.package.artifacts.specs)} artifact(s)")


def check_construct(run: CheckRun) -> None:
    """The class constructs from its artifacts as saved and loaded back."""
    try:
        loaded = run.package.loaded_artifacts
        run.model = run.model_class(loaded) if run.takes_artifacts else run.model_class()
    except Exception as e:  # noqa: BLE001
        call = f"{run.report.class_name}({'artifacts' if run.takes_artifacts else ''})"
        raise run.fail("construct", f"{call} raised {raised(e)}")
    run.add("construct", PASS, "constructed from artifacts saved and loaded back" if run.artifacts else "constructed")


def check_input_schema(run: CheckRun) -> None:
    """The input schema is declared or inferred, and the sample conforms to it."""
    schema_cls = DataFrameSchema if run.kind == "dataframe" else TensorSchema
    declared = getattr(run.model_class, "input_schema", None)
    try:
        schema = schema_from_spec(declared, run.kind) if declared is not None else schema_cls.infer(run.sample)
        run.report.input_schema = schema
        enforced = schema.enforce(run.sample)
    except SchemaError as e:
        raise run.fail("input_schema", f"the sample does not conform to the declared input schema: {e}")
    except (TypeError, ValueError) as e:
        raise run.fail("input_schema", f"invalid input_schema: {e}")
    run.data = enforced.data
    notes = []
    if enforced.ignored:
        notes.append(f"extra columns ignored: {', '.join(enforced.ignored)}")
    if enforced.casts:
        notes.append("casts: " + "; ".join(enforced.casts))
    origin = "declared" if declared is not None else "inferred from the sample"
    run.add("input_schema", PASS, f"{origin}: {schema!r}" + (f" ({'; '.join(notes)})" if notes else ""))


def check_output_type(run: CheckRun) -> None:
    """predict returns a DataFrame (a DataFrameModel) or a dict of arrays (a TensorModel)."""
    run.pristine = samples.copy(run.data)
    try:
        output = run.model.predict(run.data)
    except Exception as e:  # noqa: BLE001
        raise run.fail("output_type", f"predict raised on {SAMPLE}: {raised(e)}")
    if run.kind == "dataframe" and not isinstance(output, pd.DataFrame):
        raise run.fail("output_type", f"predict returned {type(output).__module__}.{type(output).__name__}; a "
                       "DataFrameModel must return a pandas DataFrame (e.g. `pd.DataFrame({'score': scores}, "
                       "index=df.index)`).")
    if run.kind == "tensor" and not (isinstance(output, Mapping) and output and all(isinstance(v, np.ndarray) for v in output.values())):
        raise run.fail("output_type", f"predict returned {type(output).__name__}; a TensorModel must return a dict "
                       "of numpy arrays (e.g. `{'probs': probs}`).")
    run.output = run.report.output = output
    run.report.sample = run.data
    run.add("output_type", PASS, "DataFrame" if run.kind == "dataframe" else "dict of arrays: " + ", ".join(output))


def check_rows_aligned(run: CheckRun) -> None:
    """One output row per input row, on the input's index."""
    n, output = samples.n_rows(run.data), run.output
    if run.kind == "dataframe":
        if len(output) != n:
            run.add("rows_aligned", FAIL, f"predict returned {len(output)} rows for {n} input rows: return one row "
                    "per input row.")
        elif not output.index.equals(run.data.index):
            run.add("rows_aligned", FAIL, "the output's index differs from the input's: build the output with "
                    "`index=df.index` so each prediction stays with its row.")
        else:
            run.add("rows_aligned", PASS, f"{n} rows in, {n} rows out, same index")
        return
    bad = [k for k, v in output.items() if v.ndim == 0 or v.shape[0] != n]
    if bad:
        run.add("rows_aligned", FAIL, f"output(s) {', '.join(bad)} do not have {n} rows on their first dimension.")
    else:
        run.add("rows_aligned", PASS, f"every output has {n} rows")


def check_output_schema(run: CheckRun) -> None:
    """The output schema is declared (and the output matches it) or inferred from the output."""
    declared = getattr(run.model_class, "output_schema", None)
    schema_cls = DataFrameSchema if run.kind == "dataframe" else TensorSchema
    try:
        schema = schema_from_spec(declared, run.kind) if declared is not None else schema_cls.infer(run.output)
        problems = schema.problems(run.output) if declared is not None else []
    except (SchemaError, TypeError, ValueError) as e:
        raise run.fail("output_schema", f"cannot derive an output schema: {e}")
    run.report.output_schema = schema
    if problems:
        detail = "; ".join(f"{p['field']}: {p['error']}" for p in problems)
        run.add("output_schema", FAIL, f"the output does not match the declared output_schema: {detail}")
    else:
        run.add("output_schema", PASS, f"{'declared' if declared is not None else 'inferred'}: {schema!r}")


def check_no_mutation(run: CheckRun) -> None:
    """predict leaves its input unchanged (the checks after it go on with the unchanged copy)."""
    if samples.same_input(run.pristine, run.data):
        run.add("no_mutation", PASS, "the input is unchanged after predict")
        return
    run.add("no_mutation", FAIL, "predict modified its input in place: work on a copy (`df = df.copy()`) "
            "or build new columns in a new DataFrame.")
    run.data = run.pristine


def write_package(run: CheckRun) -> None:
    """Write the package (its requirements follow) and start loading it in a fresh process.

    The new interpreter starts and imports the model's libraries while the checks below run in this one.
    """
    run.package.write(sample=run.data, input_schema=run.report.input_schema,
                      output_schema=run.report.output_schema, takes_artifacts=run.takes_artifacts)
    run.fresh = FreshProcess(run.package_dir, run.timeout)


def check_deterministic(run: CheckRun) -> None:
    """Two calls on the same input agree."""
    same, why = _agrees(run.output, lambda: run.model.predict(samples.copy(run.data)),
                        f"the second call on {SAMPLE}", "second call")
    if same:
        run.add("deterministic", PASS, "two calls on the same input agree")
    else:
        run.add("deterministic", FAIL, f"two calls on the same input disagree ({why}): fix random seeds "
                "(e.g. `np.random.default_rng(0)`) or remove state that changes between calls.")


def check_batch_invariance(run: CheckRun) -> None:
    """All rows at once predict the same as one row at a time (a warning: online requests carry few rows)."""
    data, n = run.data, samples.n_rows(run.data)
    same, why = _agrees(run.output, lambda: samples.concat([run.model.predict(samples.slice_rows(data, i, i + 1))
                                                            for i in range(n)]),
                        "predict, given one row at a time,", "row-by-row prediction")
    if run.package_dir is not None:  # the server batches concurrent requests of proven models only
        set_contract_field(run.package_dir, "batch_invariant", bool(same) and n > 1)
    if same:
        run.add("batch_invariance", PASS, "all rows at once equal one row at a time")
    else:
        run.add("batch_invariance", WARN, f"predicting rows one at a time differs from all at once ({why}); "
                "online requests carry few rows, so served predictions may differ from batch ones.")


def check_empty_input(run: CheckRun) -> None:
    """0 rows in, 0 rows out."""
    try:
        empty_out = run.model.predict(samples.slice_rows(run.data, 0, 0))
    except Exception as e:  # noqa: BLE001
        run.add("empty_input", WARN, f"0 rows raise {raised(e).rstrip('.')} (predict on {EMPTY}). Served models "
                "will answer empty requests with this error; consider returning an empty result.")
        return
    rows = samples.n_rows(empty_out) if isinstance(empty_out, (pd.DataFrame, Mapping)) else None
    if rows == 0:
        run.add("empty_input", PASS, "0 rows in, 0 rows out")
    else:
        run.add("empty_input", FAIL, f"0 rows in gave {rows if rows is not None else type(empty_out).__name__} "
                "rows out: return an empty result for an empty input.")


def check_schema_rejects_bad_input(run: CheckRun) -> None:
    """The input schema rejects a missing and a wrongly typed column, naming it."""
    schema, data = run.report.input_schema, run.data
    messages, failed = [], []
    for label, perturbed in (("missing", samples.drop_first(data, schema)),
                             ("wrongly typed", samples.perturb_type(data, schema))):
        if perturbed is None:
            continue
        bad, col = perturbed
        try:
            schema.enforce(bad)
            failed.append(f"a {label} '{col}' was accepted")
        except SchemaError as e:
            if any(p["field"] == col for p in e.problems):
                messages.append(f"{label} '{col}' rejected")
            else:
                failed.append(f"a {label} '{col}' was rejected without naming it: {e}")
    if failed:
        run.add("schema_rejects_bad_input", FAIL, "; ".join(failed))
    else:
        run.add("schema_rejects_bad_input", PASS, "; ".join(messages))


def check_requirements_pinned(run: CheckRun) -> None:
    """Every imported module belongs to an installed distribution, pinned in the package."""
    requirements = run.package.pin_requirements()
    run.report.requirements = list(requirements.pinned)
    if requirements.unresolved:
        run.add("requirements_pinned", FAIL, f"module(s) {', '.join(sorted(requirements.unresolved))} are "
                "imported but belong to no installed distribution, so they cannot be installed where the model "
                "runs: install them as a package (pip install -e ...) or define the code in the notebook.")
    else:
        run.add("requirements_pinned", PASS, ", ".join(requirements.pinned))


def check_fresh_process(run: CheckRun) -> None:
    """Parity against the "fresh process" target: the package reloaded in a new interpreter predicts the same."""
    try:
        prediction, seconds = run.fresh.result()
        parity = compare(run.output, prediction, target=FRESH_PROCESS)
    except Exception as e:  # noqa: BLE001
        run.add("fresh_process", FAIL, f"the package fails to load or predict in a new Python process: {e}")
        return
    if parity.ok:
        run.add("fresh_process", PASS, f"the package reloaded in a new Python process predicts the same "
                f"({seconds:.1f} s)")
    else:
        run.add("fresh_process", FAIL, f"the package reloaded in a new Python process predicts differently "
                f"({FRESH_PROCESS} parity): {parity.reason()}. The model depends on notebook state that was not "
                "captured.")


def check_latency(run: CheckRun) -> None:
    """Informational: the time of a batch and of one row, p50 and p99."""
    data, n, model = run.data, samples.n_rows(run.data), run.model
    times = {}
    for label, inputs, repeat in ((SAMPLE, lambda: samples.copy(data), max(5, min(50, 200 // max(n, 1)))),
                                  (ONE_ROW, lambda: samples.slice_rows(data, 0, 1), 20)):
        try:
            times[label] = samples.timed(lambda: model.predict(inputs()), repeat=repeat, budget=LATENCY_BUDGET_S)
        except Exception as e:  # noqa: BLE001 - the user's predict failed: the check reports it
            run.add("latency", FAIL, f"predict raised on {label} while being timed: {raised(e)}. Served requests "
                    "carry one row or a few: make predict work for any number of rows.")
            return
    batch_times, row_times = times[SAMPLE], times[ONE_ROW]
    lat = run.report.latency = {
        "batch_rows": n,
        "batch_p50_ms": float(np.percentile(batch_times, 50) * 1e3),
        "batch_p99_ms": float(np.percentile(batch_times, 99) * 1e3),
        "row_p50_ms": float(np.percentile(row_times, 50) * 1e3),
        "row_p99_ms": float(np.percentile(row_times, 99) * 1e3),
    }
    run.add("latency", PASS, f"batch of {n}: p50 {lat['batch_p50_ms']:.2f} ms, p99 {lat['batch_p99_ms']:.2f} ms; "
            f"one row: p50 {lat['row_p50_ms']:.2f} ms, p99 {lat['row_p99_ms']:.2f} ms")


STEPS: list[tuple[str | None, Callable[[CheckRun], None]]] = [
    ("contract", check_contract),
    ("capture", check_capture),
    ("construct", check_construct),
    ("input_schema", check_input_schema),
    ("output_type", check_output_type),
    ("rows_aligned", check_rows_aligned),
    ("output_schema", check_output_schema),
    ("no_mutation", check_no_mutation),
    (None, write_package),  # not a check: the package step, which the checks below need
    ("deterministic", check_deterministic),
    ("batch_invariance", check_batch_invariance),
    ("empty_input", check_empty_input),
    ("schema_rejects_bad_input", check_schema_rejects_bad_input),
    ("requirements_pinned", check_requirements_pinned),
    ("fresh_process", check_fresh_process),
    ("latency", check_latency),
]
"""The steps in the order they run: (the check each adds, the step)."""

ALL_CHECKS = [name for name, _ in STEPS if name is not None]
