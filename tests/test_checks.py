"""The contract check: what ``pyml_jupyter.check()`` says about a model class defined in a notebook.

Each test defines its model in cells of a real IPython shell, as a data scientist would, runs
``report = check(...)`` in a cell, and reads the named check it is about. A failing check names the problem
and says how to fix it; ``report.ok`` is false exactly when some check failed.
"""

from __future__ import annotations

import gc
import json
import sys
import textwrap

import pytest

from notebook_shell import ipython, run, shell  # noqa: F401

CUSTOMERS = """
    import numpy as np
    import pandas as pd
    from pyml_jupyter import DataFrameModel, TensorModel, check

    customers = pd.DataFrame({
        "tenure_months": [1, 5, 12, 30, 2, 48],
        "monthly_charges": [20.0, 35.5, 50.25, 80.0, 99.5, 10.0],
        "contract": ["monthly", "yearly", "monthly", "two_year", "monthly", "yearly"],
    })
"""

SIMPLE_MODEL = """
    class ChurnModel(DataFrameModel):
        def predict(self, df):
            return pd.DataFrame({"score": df["monthly_charges"] / 100.0}, index=df.index)
"""


@pytest.fixture
def notebook(shell):
    """A notebook in which the ``customers`` frame, numpy, pandas and the pyml_jupyter API are defined."""
    run(shell, CUSTOMERS)
    return shell


def check_model(notebook, model_cell: str, call: str = "check(ChurnModel, customers)"):
    """Run the cell defining the model, then ``report = <call>`` in another cell; return the report."""
    run(notebook, model_cell)
    run(notebook, f"report = {call}")
    return notebook.user_ns["report"]


def status(report, name: str) -> str:
    return report.get(name).status


# -- a passing model ----------------------------------------------------------------------------------------------


def test_a_model_following_the_contract_passes_every_check(notebook):
    report = check_model(notebook, SIMPLE_MODEL)

    assert report.ok and report.status == "passed"
    assert {c.name: c.status for c in report.checks} == {
        "contract": "pass", "capture": "pass", "construct": "pass", "input_schema": "pass", "output_type": "pass",
        "rows_aligned": "pass", "output_schema": "pass", "no_mutation": "pass", "deterministic": "pass",
        "batch_invariance": "pass", "empty_input": "pass", "schema_rejects_bad_input": "pass",
        "requirements_pinned": "pass", "fresh_process": "pass", "latency": "pass",
    }


def test_a_constructor_without_arguments_is_accepted(notebook):
    report = check_model(notebook, """
        class ChurnModel(DataFrameModel):
            def __init__(self):
                self.scale = 100.0

            def predict(self, df):
                return pd.DataFrame({"score": df["monthly_charges"] / self.scale}, index=df.index)
    """)

    assert report.ok
    assert "takes no arguments" in report.get("contract").message
    assert status(report, "construct") == "pass"


def test_the_input_schema_is_inferred_from_the_sample(notebook):
    report = check_model(notebook, SIMPLE_MODEL)

    assert report.input_schema.to_dict()["columns"] == [
        {"name": "tenure_months", "dtype": "int64", "nullable": False},
        {"name": "monthly_charges", "dtype": "float64", "nullable": False},
        {"name": "contract", "dtype": "string", "nullable": False},
    ]
    assert "inferred from the sample" in report.get("input_schema").message


def test_the_checks_run_in_the_order_of_their_steps(notebook):
    from pyml_jupyter.checks import ALL_CHECKS

    report = check_model(notebook, SIMPLE_MODEL)

    assert [c.name for c in report.checks] == ALL_CHECKS


def test_a_check_failing_early_marks_the_later_checks_skipped(notebook):
    report = check_model(notebook, """
        class ChurnModel(DataFrameModel):
            def predict(self, df):
                return df["monthly_charges"].to_numpy()
    """)

    assert status(report, "output_type") == "fail"
    assert {c.name for c in report.checks if c.status == "skipped"} == {
        "rows_aligned", "output_schema", "no_mutation", "deterministic", "batch_invariance", "empty_input",
        "schema_rejects_bad_input", "requirements_pinned", "fresh_process", "latency",
    }
    assert report.get("latency").message == "not run: an earlier check failed"


# -- the contract itself ------------------------------------------------------------------------------------------


def test_a_class_not_subclassing_the_contract_fails_and_nothing_else_runs(notebook):
    report = check_model(notebook, """
        class ChurnModel:
            def predict(self, df):
                return df
    """)

    assert not report.ok
    assert status(report, "contract") == "fail"
    assert "must subclass pyml_jupyter.DataFrameModel or pyml_jupyter.TensorModel" in report.get("contract").message
    assert {c.status for c in report.checks if c.name != "contract"} == {"skipped"}


def test_a_constructor_with_two_required_arguments_fails_naming_them(notebook):
    report = check_model(notebook, """
        class ChurnModel(DataFrameModel):
            def __init__(self, artifacts, threshold):
                self.threshold = threshold

            def predict(self, df):
                return df[["monthly_charges"]]
    """)

    assert status(report, "contract") == "fail"
    message = report.get("contract").message
    assert "__init__ takes (artifacts, threshold)" in message
    assert "one argument: the artifacts mapping" in message


def test_a_class_without_predict_fails(notebook):
    report = check_model(notebook, "class ChurnModel(DataFrameModel):\n    pass\n")

    assert status(report, "contract") == "fail"
    assert "does not implement predict()" in report.get("contract").message


def test_artifacts_given_to_a_constructor_that_takes_none_fail(notebook):
    report = check_model(
        notebook,
        """
        class ChurnModel(DataFrameModel):
            def __init__(self):
                pass

            def predict(self, df):
                return pd.DataFrame({"score": df["monthly_charges"] / 100.0}, index=df.index)
        """,
        call="check(ChurnModel, customers, {'scale': 100.0})",
    )

    assert status(report, "contract") == "fail"
    assert "def __init__(self, artifacts)" in report.get("contract").message


def test_a_sample_that_is_not_a_dataframe_fails(notebook):
    report = check_model(notebook, SIMPLE_MODEL, call="check(ChurnModel, customers.to_dict('records'))")

    assert status(report, "contract") == "fail"
    assert "must be a pandas DataFrame, got list" in report.get("contract").message


def test_an_empty_sample_fails(notebook):
    report = check_model(notebook, SIMPLE_MODEL, call="check(ChurnModel, customers.head(0))")

    assert status(report, "contract") == "fail"
    assert "0 rows" in report.get("contract").message


# -- what predict returns -----------------------------------------------------------------------------------------


def test_returning_an_ndarray_fails_output_type(notebook):
    report = check_model(notebook, """
        class ChurnModel(DataFrameModel):
            def predict(self, df):
                return df["monthly_charges"].to_numpy() / 100.0
    """)

    assert status(report, "output_type") == "fail"
    message = report.get("output_type").message
    assert "predict returned numpy.ndarray" in message
    assert "must return a pandas DataFrame" in message


def test_predict_raising_on_the_sample_fails_output_type_with_the_error(notebook):
    report = check_model(notebook, """
        class ChurnModel(DataFrameModel):
            def predict(self, df):
                return pd.DataFrame({"score": df["monthly_chargez"]}, index=df.index)
    """)

    assert status(report, "output_type") == "fail"
    assert "predict raised on the sample: KeyError: 'monthly_chargez'" in report.get("output_type").message


def test_dropping_rows_fails_rows_aligned(notebook):
    report = check_model(notebook, """
        class ChurnModel(DataFrameModel):
            def predict(self, df):
                out = pd.DataFrame({"score": df["monthly_charges"] / 100.0}, index=df.index)
                return out[df["tenure_months"] > 1]
    """)

    assert not report.ok
    assert status(report, "rows_aligned") == "fail"
    assert "predict returned 5 rows for 6 input rows" in report.get("rows_aligned").message


def test_an_output_with_another_index_fails_rows_aligned(notebook):
    report = check_model(
        notebook,
        """
        class ChurnModel(DataFrameModel):
            def predict(self, df):
                return pd.DataFrame({"score": (df["monthly_charges"] / 100.0).to_numpy()})
        """,
        call="check(ChurnModel, customers.set_index(customers.index + 100))",
    )

    assert status(report, "rows_aligned") == "fail"
    assert "index=df.index" in report.get("rows_aligned").message


@pytest.mark.filterwarnings("ignore::pandas.errors.SettingWithCopyWarning")  # the user code mutates
def test_mutating_the_input_fails_no_mutation(notebook):
    report = check_model(notebook, """
        class ChurnModel(DataFrameModel):
            def predict(self, df):
                df["score"] = df["monthly_charges"] / 100.0
                return df[["score"]]
    """)

    assert not report.ok
    assert status(report, "no_mutation") == "fail"
    assert "predict modified its input in place" in report.get("no_mutation").message
    assert "df.copy()" in report.get("no_mutation").message


def test_random_predictions_without_a_seed_fail_deterministic(notebook):
    report = check_model(notebook, """
        class ChurnModel(DataFrameModel):
            def predict(self, df):
                noise = np.random.random(len(df))
                return pd.DataFrame({"score": df["monthly_charges"] / 100.0 + noise}, index=df.index)
    """)

    assert not report.ok
    assert status(report, "deterministic") == "fail"
    message = report.get("deterministic").message
    assert "two calls on the same input disagree (column 'score': values differ" in message
    assert "random seeds" in message


def test_normalising_by_the_batch_mean_warns_about_batch_invariance_but_passes(notebook):
    report = check_model(notebook, """
        class ChurnModel(DataFrameModel):
            def predict(self, df):
                charges = df["monthly_charges"]
                return pd.DataFrame({"score": charges - charges.mean()}, index=df.index)
    """)

    assert report.ok
    assert status(report, "batch_invariance") == "warn"
    assert "predicting rows one at a time differs from all at once" in report.get("batch_invariance").message
    assert report.summary() == "ChurnModel passed the contract check (1 warning)."


def test_an_empty_input_giving_an_empty_output_passes(notebook):
    report = check_model(notebook, SIMPLE_MODEL)

    assert status(report, "empty_input") == "pass"
    assert report.get("empty_input").message == "0 rows in, 0 rows out"


def test_an_empty_input_raising_warns(notebook):
    report = check_model(notebook, """
        class ChurnModel(DataFrameModel):
            def predict(self, df):
                if df.empty:
                    raise ValueError("no customers to score")
                return pd.DataFrame({"score": df["monthly_charges"] / 100.0}, index=df.index)
    """)

    assert report.ok
    assert status(report, "empty_input") == "warn"
    assert "0 rows raise ValueError: no customers to score" in report.get("empty_input").message


def test_an_empty_input_giving_rows_fails(notebook):
    report = check_model(notebook, """
        class ChurnModel(DataFrameModel):
            def predict(self, df):
                if df.empty:
                    return pd.DataFrame({"score": [0.0]})
                return pd.DataFrame({"score": df["monthly_charges"] / 100.0}, index=df.index)
    """)

    assert status(report, "empty_input") == "fail"
    assert "0 rows in gave 1 rows out" in report.get("empty_input").message


def test_missing_values_in_nullable_outputs_compare_equal_across_calls_and_processes(notebook):
    report = check_model(notebook, """
        class ChurnModel(DataFrameModel):
            def predict(self, df):
                long = df["tenure_months"] > 10
                return pd.DataFrame({
                    "months_left": (72 - df["tenure_months"]).astype("Int64").where(long),
                    "renews": (df["contract"] != "monthly").astype("boolean").where(long),
                }, index=df.index)
    """)

    assert report.output_schema.to_dict()["columns"] == [
        {"name": "months_left", "dtype": "int64", "nullable": True},
        {"name": "renews", "dtype": "bool", "nullable": True},
    ]
    assert status(report, "deterministic") == "pass"
    assert status(report, "fresh_process") == "pass", report.get("fresh_process").message


# -- schemas ------------------------------------------------------------------------------------------------------


def test_a_sample_violating_the_declared_input_schema_fails_naming_the_column(notebook):
    report = check_model(notebook, """
        class ChurnModel(DataFrameModel):
            input_schema = {"tenure_months": "int64", "monthly_charges": "float64", "region": "string"}

            def predict(self, df):
                return pd.DataFrame({"score": df["monthly_charges"] / 100.0}, index=df.index)
    """)

    assert status(report, "input_schema") == "fail"
    message = report.get("input_schema").message
    assert message.startswith("the sample does not conform to the declared input schema")
    assert "region" in message


def test_a_declared_input_schema_is_what_predict_receives(notebook):
    report = check_model(notebook, """
        class ChurnModel(DataFrameModel):
            input_schema = {"tenure_months": "float64", "monthly_charges": "float64"}

            def predict(self, df):
                assert list(df.columns) == ["tenure_months", "monthly_charges"], df.columns
                assert df["tenure_months"].dtype == "float64"
                return pd.DataFrame({"score": df["monthly_charges"] / 100.0}, index=df.index)
    """)

    assert report.ok, report
    message = report.get("input_schema").message
    assert message.startswith("declared")
    assert "extra columns ignored: contract" in message


def test_an_output_violating_the_declared_output_schema_fails_naming_the_column(notebook):
    report = check_model(notebook, """
        class ChurnModel(DataFrameModel):
            output_schema = {"score": "float64", "churn": "bool"}

            def predict(self, df):
                return pd.DataFrame({"score": df["monthly_charges"] / 100.0}, index=df.index)
    """)

    assert not report.ok
    assert status(report, "output_schema") == "fail"
    message = report.get("output_schema").message
    assert "the output does not match the declared output_schema" in message
    assert "churn" in message


def test_the_input_schema_rejects_a_missing_and_a_wrongly_typed_column_naming_it(notebook):
    report = check_model(notebook, SIMPLE_MODEL)

    assert status(report, "schema_rejects_bad_input") == "pass"
    assert report.get("schema_rejects_bad_input").message == (
        "missing 'tenure_months' rejected; wrongly typed 'tenure_months' rejected"
    )


# -- capture ------------------------------------------------------------------------------------------------------


def test_a_notebook_variable_read_by_predict_fails_capture_naming_it_and_suggesting_artifacts(notebook):
    run(notebook, "discounts = pd.Series({'monthly': 0.0, 'yearly': 0.1, 'two_year': 0.2})")
    report = check_model(notebook, """
        class ChurnModel(DataFrameModel):
            def predict(self, df):
                discount = df["contract"].map(discounts).to_numpy()
                return pd.DataFrame({"score": df["monthly_charges"] * (1 - discount)}, index=df.index)
    """)

    assert not report.ok
    assert status(report, "capture") == "fail"
    message = report.get("capture").message
    assert "uses the notebook variable `discounts`" in message
    assert "--artifacts discounts=discounts" in message
    assert 'artifacts["discounts"]' in message
    assert status(report, "fresh_process") == "skipped"


def test_helper_functions_from_the_notebook_are_captured(notebook):
    run(notebook, """
        def features(df):
            return df[["tenure_months", "monthly_charges"]].to_numpy(dtype=float)
    """)
    report = check_model(notebook, """
        class ChurnModel(DataFrameModel):
            def predict(self, df):
                return pd.DataFrame({"score": features(df).sum(axis=1)}, index=df.index)
    """)

    assert report.ok, report
    assert "helpers: features" in report.get("capture").message
    assert "def features(df):" in (report.package_dir / "model.py").read_text()


@pytest.mark.parametrize(
    "expression, kind",
    [("lambda x: x", "lambda"), ("threading.Lock()", "lock")],
    ids=["lambda", "lock"],
)
def test_an_artifact_that_cannot_be_pickled_fails_capture_naming_it(notebook, expression, kind):
    run(notebook, f"import threading\nhelper = {expression}")
    report = check_model(
        notebook,
        """
        class ChurnModel(DataFrameModel):
            def __init__(self, artifacts):
                self.helper = artifacts["helper"]

            def predict(self, df):
                return pd.DataFrame({"score": df["monthly_charges"] / 100.0}, index=df.index)
        """,
        call="check(ChurnModel, customers, {'helper': helper})",
    )

    assert status(report, "capture") == "fail"
    message = report.get("capture").message
    assert message.startswith("an artifact cannot be saved and loaded back")
    assert "'helper'" in message


def test_an_artifact_of_a_class_defined_in_the_notebook_fails_capture_saying_where_to_move_it(notebook):
    run(notebook, """
        class Discounts:
            def __init__(self, rates):
                self.rates = rates
    """)
    run(notebook, "discounts = Discounts({'monthly': 0.0, 'yearly': 0.1})")
    report = check_model(
        notebook,
        """
        class ChurnModel(DataFrameModel):
            def __init__(self, artifacts):
                self.discounts = artifacts["discounts"]

            def predict(self, df):
                return pd.DataFrame({"score": df["monthly_charges"] / 100.0}, index=df.index)
        """,
        call="check(ChurnModel, customers, {'discounts': discounts})",
    )

    assert status(report, "capture") == "fail"
    message = report.get("capture").message
    assert "artifact(s) discounts contain objects of a class defined in the notebook" in message
    assert "importable module" in message


@pytest.fixture
def helpermod(tmp_path, monkeypatch):
    """``helpermod.py``: a module on ``sys.path`` that no installed distribution provides."""
    (tmp_path / "helpermod.py").write_text(textwrap.dedent("""
        def charge_ratio(df):
            return df["monthly_charges"] / 100.0
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "helpermod"
    sys.modules.pop("helpermod", None)


def test_a_module_from_a_local_file_fails_requirements_and_the_fresh_process(notebook, helpermod):
    run(notebook, "import helpermod")
    report = check_model(notebook, """
        class ChurnModel(DataFrameModel):
            def predict(self, df):
                return pd.DataFrame({"score": helpermod.charge_ratio(df)}, index=df.index)
    """)

    assert not report.ok
    assert status(report, "requirements_pinned") == "fail"
    assert "module(s) helpermod are imported but belong to no installed distribution" in (
        report.get("requirements_pinned").message
    )
    assert status(report, "fresh_process") == "fail"
    assert "No module named 'helpermod'" in report.get("fresh_process").message


# -- the package in a fresh process ----------------------------------------------------------------------------


def test_a_scikit_learn_model_predicts_the_same_in_a_fresh_process(notebook):
    run(notebook, """
        from sklearn.linear_model import LogisticRegression

        X = customers[["tenure_months", "monthly_charges"]].to_numpy(dtype=float)
        clf = LogisticRegression().fit(X, [1, 0, 1, 0, 1, 0])
    """)
    report = check_model(
        notebook,
        """
        class ChurnModel(DataFrameModel):
            def __init__(self, artifacts):
                self.clf = artifacts["clf"]

            def predict(self, df):
                X = df[["tenure_months", "monthly_charges"]].to_numpy(dtype=float)
                return pd.DataFrame({"churn_probability": self.clf.predict_proba(X)[:, 1]}, index=df.index)
        """,
        call="check(ChurnModel, customers, {'clf': clf})",
    )

    assert report.ok, report
    assert status(report, "fresh_process") == "pass"
    assert "predicts the same" in report.get("fresh_process").message
    assert any(r.startswith("scikit-learn==") for r in report.requirements)
    assert "import pandas as pd" in (report.package_dir / "model.py").read_text()


def test_the_package_is_written_where_the_report_says(notebook):
    report = check_model(notebook, SIMPLE_MODEL)

    contract = json.loads((report.package_dir / "pyml.json").read_text())
    assert contract["class_name"] == "ChurnModel"
    assert contract["kind"] == "dataframe"
    pinned = [line for line in (report.package_dir / "requirements.txt").read_text().splitlines()
              if line and not line.startswith("#")]
    assert pinned == report.requirements


def test_the_temporary_package_is_removed_with_its_report(notebook):
    report = check_model(notebook, SIMPLE_MODEL)
    package_dir = report.package_dir
    assert (package_dir / "model.py").is_file()

    del report
    run(notebook, "del report")
    gc.collect()

    assert not package_dir.exists()


def test_a_prediction_that_differs_in_a_fresh_process_fails_its_parity_naming_the_column(notebook):
    report = check_model(notebook, """
        import os

        class ChurnModel(DataFrameModel):
            def predict(self, df):
                return pd.DataFrame({"process": [os.getpid()] * len(df)}, index=df.index)
    """)

    assert status(report, "deterministic") == "pass"
    assert status(report, "fresh_process") == "fail"
    message = report.get("fresh_process").message
    assert "predicts differently (fresh process parity): column 'process': values differ by up to" in message
    assert "notebook state that was not captured" in message


def test_a_failed_contract_writes_no_package(notebook):
    report = check_model(notebook, """
        class ChurnModel:
            def predict(self, df):
                return df
    """)

    assert status(report, "contract") == "fail"
    assert report.package_dir is None


# -- TensorModel --------------------------------------------------------------------------------------------------

LINEAR_LAYER = """
    weights = np.arange(6, dtype="float32").reshape(3, 2) / 10
    bias = np.array([0.5, -0.5], dtype="float32")
    batch = {"x": np.linspace(0, 1, 12, dtype="float32").reshape(4, 3)}

    class Linear(TensorModel):
        def __init__(self, artifacts):
            self.weights = artifacts["weights"]
            self.bias = artifacts["bias"]

        def predict(self, tensors):
            return {"logits": tensors["x"] @ self.weights + self.bias}
"""


def test_a_tensor_model_with_numpy_weights_passes(notebook):
    report = check_model(notebook, LINEAR_LAYER, call="check(Linear, batch, {'weights': weights, 'bias': bias})")

    assert report.ok, report
    assert report.kind == "tensor"
    assert report.get("output_type").message == "dict of arrays: logits"
    assert report.get("rows_aligned").message == "every output has 4 rows"
    assert status(report, "fresh_process") == "pass"
    assert report.input_schema.to_dict()["tensors"][0]["dtype"] == "float32"


def test_a_tensor_model_returning_a_list_fails_output_type(notebook):
    report = check_model(
        notebook,
        LINEAR_LAYER + """
    class ListLinear(Linear):
        def predict(self, tensors):
            return (tensors["x"] @ self.weights + self.bias).tolist()
    """,
        call="check(ListLinear, batch, {'weights': weights, 'bias': bias})",
    )

    assert status(report, "output_type") == "fail"
    assert "predict returned list; a TensorModel must return a dict of numpy arrays" in (
        report.get("output_type").message
    )


def test_a_tensor_model_sample_must_be_a_dict_of_arrays(notebook):
    report = check_model(notebook, LINEAR_LAYER, call="check(Linear, batch['x'], {'weights': weights, 'bias': bias})")

    assert status(report, "contract") == "fail"
    assert "must be a dict of numpy arrays" in report.get("contract").message


def test_a_tensor_output_without_one_row_per_input_fails_rows_aligned(notebook):
    report = check_model(
        notebook,
        LINEAR_LAYER + """
    class Summed(Linear):
        def predict(self, tensors):
            return {"total": (tensors["x"] @ self.weights).sum(axis=0)}
    """,
        call="check(Summed, batch, {'weights': weights, 'bias': bias})",
    )

    assert status(report, "rows_aligned") == "fail"
    assert "output(s) total do not have 4 rows" in report.get("rows_aligned").message


# -- the report ---------------------------------------------------------------------------------------------------


def test_the_report_carries_latency_figures(notebook):
    report = check_model(notebook, SIMPLE_MODEL)

    assert set(report.latency) == {"batch_rows", "batch_p50_ms", "batch_p99_ms", "row_p50_ms", "row_p99_ms"}
    assert report.latency["batch_rows"] == 6
    assert 0 < report.latency["batch_p50_ms"] <= report.latency["batch_p99_ms"]
    assert 0 < report.latency["row_p50_ms"] <= report.latency["row_p99_ms"]
    assert report.get("latency").message.startswith("batch of 6: p50 ")


def test_the_report_reads_as_text_html_and_json(notebook):
    report = check_model(notebook, """
        class ChurnModel(DataFrameModel):
            def predict(self, df):
                return df["monthly_charges"].to_numpy()
    """)

    text = repr(report)
    assert text.splitlines()[0] == "ContractReport(ChurnModel): FAILED"
    assert "✗ output_type" in text and "– rows_aligned" in text

    page = report._repr_html_()
    assert "Contract check for <code>ChurnModel</code>" in page
    assert page.count("<tr>") == 1 + len(report.checks)
    assert "must return a pandas DataFrame" in page

    data = json.loads(report.to_json())
    assert data == report.to_dict()
    assert data["ok"] is False and data["status"] == "failed"
    assert {"name": "output_type", "status": "fail", "message": report.get("output_type").message} in data["checks"]
    assert data["input_schema"]["type"] == "dataframe"


@pytest.mark.filterwarnings("ignore::pandas.errors.SettingWithCopyWarning")  # the user code mutates
def test_the_summary_of_a_failed_report_lists_each_failure(notebook):
    report = check_model(notebook, """
        class ChurnModel(DataFrameModel):
            def predict(self, df):
                df["score"] = np.random.random(len(df))
                return df[["score"]]
    """)

    summary = report.summary().splitlines()
    assert summary[0] == "ChurnModel failed the contract check:"
    assert [line.split(":")[0] for line in summary[1:]] == ["- no_mutation", "- deterministic", "- fresh_process"]


def test_report_html_escapes_messages(notebook):
    report = check_model(notebook, """
        class ChurnModel(DataFrameModel):
            def predict(self, df):
                raise ValueError("<script>alert(1)</script>")
    """)

    assert "<script>" not in report._repr_html_()
    assert "&lt;script&gt;" in report._repr_html_()


def test_the_contract_records_batch_invariance_only_when_the_check_proved_it(notebook):
    invariant = check_model(notebook, SIMPLE_MODEL)
    batch_mean = check_model(notebook, """
        class ChurnModel(DataFrameModel):
            def predict(self, df):
                charges = df["monthly_charges"]
                return pd.DataFrame({"score": charges - charges.mean()}, index=df.index)
    """)

    assert json.loads((invariant.package_dir / "pyml.json").read_text())["batch_invariant"] is True
    assert json.loads((batch_mean.package_dir / "pyml.json").read_text())["batch_invariant"] is False
