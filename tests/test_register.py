"""register(): a model class defined in a notebook becomes a registered MLflow pyfunc model version.

Every test runs twice: against a local SQLite store (MLflow's embedded default) and against a real
``mlflow server`` process. The model is defined in cells of a real IPython shell; what MLflow holds is read
back through MLflow's own API, and loaded in this process and in a fresh one.
"""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import textwrap
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from mlflow_fixtures import all_runs, logged_models, mlflow_server, registered_models, store  # noqa: F401
from notebook_shell import CHURN_NOTEBOOK, ipython, run, shell  # noqa: F401


REGISTER = "registered = register(ChurnModel, {name!r}, sample, {{'scaler': scaler, 'clf': clf}})"


def unique_name(label: str) -> str:
    return f"{label}-{uuid.uuid4().hex[:8]}"


@dataclass
class Registered:
    """The churn model registered from the notebook, with what the notebook predicted on its sample."""

    registered: Any
    sample: pd.DataFrame
    expected: pd.DataFrame
    local_copy: Path


@pytest.fixture(scope="module")
def churn(store, ipython, tmp_path_factory):
    import mlflow

    ipython.reset(new_session=False)
    run(ipython, CHURN_NOTEBOOK)
    run(ipython, REGISTER.format(name=unique_name("churn")))
    ns = ipython.user_ns
    expected = ns["ChurnModel"]({"scaler": ns["scaler"], "clf": ns["clf"]}).predict(ns["sample"])
    local_copy = Path(mlflow.artifacts.download_artifacts(
        artifact_uri=ns["registered"].uri, dst_path=str(tmp_path_factory.mktemp("downloaded"))))
    yield Registered(ns["registered"], ns["sample"].copy(), expected, local_copy)
    ipython.reset(new_session=False)


@pytest.fixture
def notebook(store, shell):
    """A fresh notebook in which the churn model, its artifacts and its sample are defined."""
    run(shell, CHURN_NOTEBOOK)
    return shell


# -- what register() returns ------------------------------------------------------------------------------------


def test_register_returns_the_model_version_with_its_run_id_uri_and_contract_status(churn, store):
    registered = churn.registered

    assert registered.name.startswith("churn-")
    assert registered.version == 1
    assert len(registered.run_id) == 32
    assert registered.uri == f"models:/{registered.name}/1"
    assert registered.contract_status == "passed"
    assert registered.report.ok
    assert repr(registered).startswith(f"ModelVersion(models:/{registered.name}/1, run_id=")


def test_registering_the_same_name_again_creates_version_2(notebook):
    name = unique_name("again")
    run(notebook, REGISTER.format(name=name))
    run(notebook, REGISTER.format(name=name))

    assert notebook.user_ns["registered"].version == 2
    assert notebook.user_ns["registered"].uri == f"models:/{name}/2"


def test_the_run_goes_to_the_experiment_given(notebook):
    from mlflow import MlflowClient

    experiment = unique_name("churn-experiments")
    run(notebook, REGISTER.format(name=unique_name("exp"))[:-1] + f", experiment={experiment!r})")

    client = MlflowClient()
    run_info = client.get_run(notebook.user_ns["registered"].run_id).info
    assert client.get_experiment(run_info.experiment_id).name == experiment


def test_registering_inside_an_active_run_nests_under_it(notebook):
    import mlflow

    with mlflow.start_run() as parent:
        run(notebook, REGISTER.format(name=unique_name("nested")))

    child = mlflow.get_run(notebook.user_ns["registered"].run_id)
    assert child.data.tags["mlflow.parentRunId"] == parent.info.run_id


# -- loading it back --------------------------------------------------------------------------------------------


def test_the_pyfunc_model_predicts_what_the_notebook_predicted(churn):
    import mlflow

    loaded = mlflow.pyfunc.load_model(churn.registered.uri)

    pd.testing.assert_frame_equal(loaded.predict(churn.sample), churn.expected, check_exact=True)


FRESH_PROCESS = textwrap.dedent("""
    import pickle, sys
    import mlflow

    uri, sample_file, out_file = sys.argv[1:]
    with open(sample_file, "rb") as f:
        sample = pickle.load(f)
    prediction = mlflow.pyfunc.load_model(uri).predict(sample)
    with open(out_file, "wb") as f:
        pickle.dump(prediction, f)
""")


def test_a_fresh_process_in_another_directory_predicts_identically(churn, store, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / "sample.pkl").write_bytes(pickle.dumps(churn.sample))

    proc = subprocess.run(
        [sys.executable, "-c", FRESH_PROCESS, churn.registered.uri, str(tmp_path / "sample.pkl"),
         str(tmp_path / "prediction.pkl")],
        cwd=elsewhere, capture_output=True, text=True, timeout=300,
        env={**os.environ, "MLFLOW_TRACKING_URI": store},
    )

    assert proc.returncode == 0, proc.stderr[-3000:]
    prediction = pickle.loads((tmp_path / "prediction.pkl").read_bytes())
    pd.testing.assert_frame_equal(prediction, churn.expected, check_exact=True)


def test_pyml_load_gives_the_same_predictions(churn):
    from pyml_jupyter import load

    loaded = load(churn.registered.ref)

    pd.testing.assert_frame_equal(loaded.predict(churn.sample), churn.expected, check_exact=True)


# -- what MLflow holds ------------------------------------------------------------------------------------------


def test_the_logged_model_has_a_signature_from_the_schemas(churn):
    import mlflow

    signature = mlflow.models.get_model_info(churn.registered.uri).signature

    assert signature.inputs.to_dict() == [
        {"type": "long", "name": "tenure_months", "required": True},
        {"type": "double", "name": "monthly_charges", "required": True},
        {"type": "string", "name": "contract", "required": True},
    ]
    assert signature.outputs.to_dict() == [
        {"type": "double", "name": "churn_probability", "required": True},
        {"type": "boolean", "name": "churn", "required": True},
    ]


def test_the_logged_model_has_the_sample_as_input_example(churn):
    example = json.loads((churn.local_copy / "input_example.json").read_text())

    assert example["columns"] == ["tenure_months", "monthly_charges", "contract"]
    assert example["data"] == churn.sample.values.tolist()


def test_the_logged_model_pins_its_requirements(churn):
    import numpy
    import sklearn

    requirements = (churn.local_copy / "requirements.txt").read_text().split()

    assert f"scikit-learn=={sklearn.__version__}" in requirements
    assert f"numpy=={numpy.__version__}" in requirements
    assert f"pandas=={pd.__version__}" in requirements
    assert all("==" in r for r in requirements)


def test_the_logged_model_is_a_pyfunc_over_the_package(churn):
    import yaml

    mlmodel = yaml.safe_load((churn.local_copy / "MLmodel").read_text())

    assert mlmodel["flavors"]["python_function"]["loader_module"] == "pyml_jupyter.serving.pyfunc"
    assert (churn.local_copy / "data" / "package" / "pyml.json").is_file()
    assert "class ChurnModel(DataFrameModel):" in (churn.local_copy / "data" / "package" / "model.py").read_text()
    assert mlmodel["metadata"]["pyml"]["class_name"] == "ChurnModel"


def test_the_contract_report_is_logged_as_json_and_html(churn):
    import mlflow

    run_id = churn.registered.run_id
    report = json.loads(mlflow.artifacts.load_text(f"runs:/{run_id}/contract/report.json"))
    page = mlflow.artifacts.load_text(f"runs:/{run_id}/contract/report.html")

    assert report == churn.registered.report.to_dict()
    assert report["status"] == "passed"
    assert "Contract check for <code>ChurnModel</code>" in page


def test_latency_is_logged_as_run_metrics(churn):
    import mlflow

    metrics = mlflow.get_run(churn.registered.run_id).data.metrics

    assert metrics["pyml.latency.batch_rows"] == 8
    for key in ("batch_p50_ms", "batch_p99_ms", "row_p50_ms", "row_p99_ms"):
        assert metrics[f"pyml.latency.{key}"] > 0


def test_the_version_is_tagged_with_contract_status_kind_and_digest(churn):
    from mlflow import MlflowClient

    tags = MlflowClient().get_model_version(churn.registered.name, "1").tags

    assert tags["pyml.contract_status"] == "passed"
    assert tags["pyml.kind"] == "dataframe"
    assert tags["pyml.digest"].startswith("sha256:")


def test_the_run_is_tagged_with_contract_status_and_class(churn):
    import mlflow

    tags = mlflow.get_run(churn.registered.run_id).data.tags

    assert tags["pyml.contract_status"] == "passed"
    assert tags["pyml.class"] == "ChurnModel"
    assert tags["mlflow.runName"] == f"pyml-{churn.registered.name}"


# -- nullable columns ---------------------------------------------------------------------------------------------


def test_nullable_integer_and_boolean_columns_survive_pyfunc_predict(store, shell):
    import mlflow

    run(shell, """
        import pandas as pd
        from pyml_jupyter import DataFrameModel, register

        visits = pd.DataFrame({
            "support_calls": pd.array([3, None, 0, 7], dtype="Int64"),
            "auto_renew": pd.array([True, None, False, True], dtype="boolean"),
            "monthly_charges": [20.0, 35.5, 50.25, 80.0],
        })

        class CallsModel(DataFrameModel):
            def predict(self, df):
                calls = df["support_calls"]
                return pd.DataFrame({
                    "calls_doubled": calls * 2,
                    "renews": df["auto_renew"],
                    "charge_per_call": df["monthly_charges"] / (calls.fillna(0).astype(float) + 1),
                }, index=df.index)
    """)
    run(shell, f"registered = register(CallsModel, {unique_name('nullable')!r}, visits)")
    expected = shell.user_ns["CallsModel"]().predict(shell.user_ns["visits"])

    prediction = mlflow.pyfunc.load_model(shell.user_ns["registered"].uri).predict(shell.user_ns["visits"])

    pd.testing.assert_frame_equal(prediction, expected, check_exact=True)
    assert str(prediction["calls_doubled"].dtype) == "Int64"
    assert prediction["renews"].isna().tolist() == [False, True, False, False]


# -- nothing half-registered --------------------------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore::pandas.errors.SettingWithCopyWarning")  # the user code mutates
def test_a_failing_check_registers_nothing_and_raises_with_the_report(notebook):
    from pyml_jupyter.errors import CheckFailed

    name = unique_name("mutating")
    run(notebook, """
        class MutatingModel(ChurnModel):
            def predict(self, df):
                df["contract"] = df["contract"].str.upper()
                return super().predict(df)
    """)
    runs_before = len(all_runs())

    result = notebook.run_cell(f"register(MutatingModel, {name!r}, sample, {{'scaler': scaler, 'clf': clf}})")

    error = result.error_in_exec
    assert isinstance(error, CheckFailed)
    assert error.report.get("no_mutation").status == "fail"
    assert f"Nothing was registered under {name!r}" in error.message
    assert len(all_runs()) == runs_before
    assert registered_models(name) == []


@pytest.mark.parametrize("bad_name", ["", "churn model", "../churn", "-churn", "churn/2", "x" * 64])
def test_an_invalid_name_is_rejected_before_anything_is_checked_or_logged(store, shell, bad_name):
    from pyml_jupyter import register
    from pyml_jupyter.errors import InvalidName

    runs_before = len(all_runs())

    with pytest.raises(InvalidName, match="is not a valid model name"):
        register(object, bad_name, sample=None)  # not even a model: the name is checked first

    assert len(all_runs()) == runs_before
