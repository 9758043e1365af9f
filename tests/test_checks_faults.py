"""check() never crashes because of the model: whatever the model does wrong becomes a line of the report.

Hypothesis combines faults (raising in the constructor, on one row, on an empty input; returning None, the
wrong index, the wrong number of rows; mutating its input; being slow) into one model class, written to a
module file as a data scientist's code would be, and checks it for real (fresh process included). The report
always comes back, and the fault whose check runs first is the one it reports, naming the input it broke on.
"""

from __future__ import annotations

import importlib.util
import sys
import textwrap
import time
import uuid
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from pyml_jupyter import check
from pyml_jupyter.checks import ALL_CHECKS, ContractReport

# fault -> (the code it adds to the model, the check that reports it, its status, words of the message)
FAULTS: dict[str, tuple[str, str, str, str]] = {
    "constructor": ("init: raise RuntimeError('fault in the constructor')",
                    "construct", "fail", "raised RuntimeError: fault in the constructor"),
    "returns_none": ("predict: return None",
                     "output_type", "fail", "predict returned builtins.NoneType"),
    "wrong_row_count": ("output: out = out.iloc[:-1] if len(out) > 1 else out",
                        "rows_aligned", "fail", "rows for 6 input rows"),
    "wrong_index": ("output: out.index = out.index + 100",
                    "rows_aligned", "fail", "the output's index differs from the input's"),
    "mutates_input": ("predict: df['charges'] = 0.0",
                      "no_mutation", "fail", "predict modified its input in place"),
    "raises_on_one_row": ("predict: if len(df) == 1: raise ValueError('fault on one row')",
                          "batch_invariance", "warn", "predict, given one row at a time, raised ValueError: fault "
                          "on one row"),
    "raises_on_empty": ("predict: if len(df) == 0: raise ValueError('fault on no rows')",
                        "empty_input", "warn", "0 rows raise ValueError: fault on no rows (predict on an empty "
                        "input (0 rows))"),
    "slow": ("predict: time.sleep(0.05)", "latency", "pass", "batch of 6"),
}
ORDER = ["constructor", "returns_none", "wrong_row_count", "wrong_index", "mutates_input", "raises_on_one_row",
         "raises_on_empty", "slow"]  # the order in which the checks reporting them run


def model_source(faults: set[str]) -> str:
    """The source of a churn model class with ``faults`` written into it."""
    where: dict[str, list[str]] = {"init": [], "predict": [], "output": []}
    for fault in ORDER:
        if fault in faults:
            place, code = FAULTS[fault][0].split(": ", 1)
            where[place].append(code.replace(": raise", ":\n    raise"))
    init = textwrap.indent("\n".join(where["init"]) or "pass", " " * 8)
    predict = textwrap.indent("\n".join(where["predict"]), " " * 8)
    output = textwrap.indent("\n".join(where["output"]), " " * 8)
    return textwrap.dedent("""\
        import time

        import pandas as pd
        from pyml_jupyter import DataFrameModel


        class FaultyModel(DataFrameModel):
            def __init__(self):
        {init}

            def predict(self, df):
        {predict}
                out = pd.DataFrame({{"score": df["charges"] / 100.0}}, index=df.index)
        {output}
                return out
        """).format(init=init, predict=predict, output=output)


def define_model(faults: set[str], folder: Path) -> type:
    """Write the model to a module file and import it, as code in a notebook's folder would be."""
    name = f"faulty_{uuid.uuid4().hex[:8]}"
    path = folder / f"{name}.py"
    path.write_text(model_source(faults))
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module.FaultyModel


SAMPLE = pd.DataFrame({"tenure": [1, 5, 12, 30, 2, 48], "charges": [20.0, 35.5, 50.25, 80.0, 99.5, 10.0]})


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("faulty-models")


@settings(max_examples=6, deadline=None, derandomize=True)
@given(faults=st.sets(st.sampled_from(ORDER), min_size=1))
@example(faults={"constructor"})
@example(faults={"returns_none"})
@example(faults={"wrong_row_count"})
@example(faults={"wrong_index"})
@example(faults={"mutates_input"})
@example(faults={"raises_on_one_row"})
@example(faults={"raises_on_empty"})
@example(faults={"slow"})
def test_check_returns_a_report_naming_the_first_fault_whatever_the_model_does(faults, folder):
    model = define_model(faults, folder)

    started = time.monotonic()
    report = check(model, SAMPLE.copy())
    seconds = time.monotonic() - started

    assert isinstance(report, ContractReport)
    assert [c.name for c in report.checks] == ALL_CHECKS
    first = next(f for f in ORDER if f in faults)
    _, check_name, status, words = FAULTS[first]
    line = report.get(check_name)
    assert line.status == status, report.summary()
    assert words in line.message
    if faults - {"slow", "raises_on_empty"}:
        assert not report.ok and report.failures
    assert seconds < 60


def test_a_model_raising_on_one_row_fails_latency_instead_of_crashing_the_check(folder):
    report = check(define_model({"raises_on_one_row"}, folder), SAMPLE.copy())

    latency = report.get("latency")
    assert latency.status == "fail"
    assert "predict raised on one row (the first of the sample) while being timed: ValueError: fault on one row" \
        in latency.message


def test_a_slow_model_is_timed_within_a_budget(folder):
    report = check(define_model({"slow"}, folder), SAMPLE.copy())

    assert report.ok
    assert report.latency["row_p50_ms"] >= 50


def test_an_exception_whose_message_cannot_be_shown_is_still_reported(folder):
    path = folder / "broken_message.py"
    path.write_text(textwrap.dedent("""\
        import pandas as pd
        from pyml_jupyter import DataFrameModel


        class Unprintable(Exception):
            def __str__(self):
                raise RuntimeError("no message")


        class BrokenMessageModel(DataFrameModel):
            def predict(self, df):
                raise Unprintable()
        """))
    spec = importlib.util.spec_from_file_location("broken_message", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["broken_message"] = module
    spec.loader.exec_module(module)

    report = check(module.BrokenMessageModel, SAMPLE.copy())

    assert report.get("output_type").status == "fail"
    assert "Unprintable: <its message cannot be shown>" in report.get("output_type").message
