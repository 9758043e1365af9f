"""The ``%pyml_*`` magics, typed into a real IPython shell against a real local MLflow store.

A magic parses its line, makes one API call and shows the result. A user mistake is one clear paragraph
(IPython's ``UsageError``) and never a traceback. The build, deploy, test, stop and batch magics run against a
real Docker engine (one image) and a real Spark session.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import pytest
from IPython.core.error import UsageError
from IPython.utils.capture import capture_output

from docker_fixtures import BASE_IMAGE, docker_engine, model_name  # noqa: F401
from mlflow_fixtures import use_tracking_uri
from notebook_shell import CHURN_NOTEBOOK, ipython, run, shell  # noqa: F401
from spark_fixtures import spark, workdir  # noqa: F401

NOTEBOOK = CHURN_NOTEBOOK

ARGS = "--sample customers.head() --artifacts scaler=scaler clf=clf"


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("magics")
    with use_tracking_uri(f"sqlite:///{workdir / 'mlflow.db'}", workdir) as uri:
        yield uri


@pytest.fixture
def notebook(store, shell):
    """A notebook with the extension loaded and the churn model, its artifacts and data defined."""
    run(shell, "%load_ext pyml_jupyter")
    run(shell, NOTEBOOK)
    return shell


@dataclass
class Cell:
    """What running one cell showed: its result, printed text and displayed objects."""

    result: object
    stdout: str
    stderr: str
    displayed: list

    @property
    def error(self):
        return self.result.error_in_exec

    @property
    def text(self) -> str:
        return self.stdout + self.stderr


def run_cell(shell, code: str) -> Cell:
    """Run a cell as Jupyter does, capturing what it prints and displays (errors are not raised)."""
    with capture_output() as captured:
        result = shell.run_cell(code, store_history=True)
    displayed = [o.data.get("text/plain", "") for o in captured.outputs]
    return Cell(result, captured.stdout, captured.stderr, displayed)


def unique_name(label: str) -> str:
    return f"{label}-{uuid.uuid4().hex[:8]}"


def versions(name: str) -> list[int]:
    from mlflow import MlflowClient

    return sorted(int(v.version) for v in MlflowClient().search_model_versions(f"name = '{name}'"))


def assert_usage_error(cell: Cell, *fragments: str) -> None:
    """The cell failed with one clear paragraph saying each fragment, and no traceback."""
    assert isinstance(cell.error, UsageError), cell.error
    for fragment in fragments:
        assert fragment in str(cell.error)
    assert f"UsageError: {cell.error}" in cell.stderr
    assert "Traceback" not in cell.text


# -- loading the extension --------------------------------------------------------------------------------------


def test_load_ext_registers_the_magics(shell):
    run(shell, "%load_ext pyml_jupyter")

    line_magics = shell.magics_manager.magics["line"]
    assert {"pyml_check", "pyml_register", "pyml_models"} <= set(line_magics)
    assert "pyml_register" in shell.magics_manager.magics["cell"]


def test_magic_help_lists_the_arguments(notebook):
    cell = run_cell(notebook, "%pyml_register?")

    assert "--name" in cell.text and "--sample" in cell.text and "--artifacts" in cell.text


# -- %pyml_check ------------------------------------------------------------------------------------------------


def test_pyml_check_shows_the_report(notebook):
    cell = run_cell(notebook, f"%pyml_check ChurnModel {ARGS}")

    assert cell.error is None
    assert cell.result.result.ok
    assert "ContractReport(ChurnModel): PASSED" in cell.stdout
    assert "fresh_process" in cell.stdout


def test_a_quoted_sample_expression_is_evaluated_not_taken_as_a_string(notebook):
    cell = run_cell(notebook, '%pyml_check ChurnModel --sample "customers.head( 5 )" --artifacts "scaler = scaler" clf=clf')

    assert cell.error is None
    assert cell.result.result.ok, cell.result.result
    assert cell.result.result.latency["batch_rows"] == 5


def test_pyml_check_of_a_failing_model_shows_the_failed_report_without_an_error(notebook):
    run(notebook, """
        class RandomModel(DataFrameModel):
            def predict(self, df):
                return pd.DataFrame({"p": np.random.random(len(df))}, index=df.index)
    """)

    cell = run_cell(notebook, "%pyml_check RandomModel --sample customers.head()")

    assert cell.error is None
    assert "ContractReport(RandomModel): FAILED" in cell.stdout


# -- %pyml_register -----------------------------------------------------------------------------------------------


def test_pyml_register_registers_the_class_and_shows_the_report(notebook):
    name = unique_name("magic")

    cell = run_cell(notebook, f"%pyml_register ChurnModel --name {name} {ARGS}")

    assert cell.error is None
    assert versions(name) == [1]
    assert any("ContractReport(ChurnModel): PASSED" in d for d in cell.displayed)
    assert f"ModelVersion(models:/{name}/1" in cell.stdout


def test_pyml_register_returns_the_model_version_to_an_assignment(notebook):
    from pyml_jupyter import ModelVersion

    name = unique_name("assigned")

    run(notebook, f"registered = %pyml_register ChurnModel --name {name} {ARGS}")

    registered = notebook.user_ns["registered"]
    assert isinstance(registered, ModelVersion)
    assert registered.uri == f"models:/{name}/1"
    assert registered.contract_status == "passed"


def test_the_cell_form_runs_the_cell_and_registers_the_class_it_defines(notebook):
    name = unique_name("cell")

    cell = run_cell(notebook, f"""%%pyml_register --name {name} {ARGS}
class TenureModel(DataFrameModel):
    def __init__(self, artifacts):
        self.clf = artifacts["clf"]
        self.scaler = artifacts["scaler"]

    def predict(self, df):
        p = self.clf.predict_proba(self.scaler.transform(features(df)))[:, 1]
        return pd.DataFrame({{"churn_probability": p, "long_tenure": df["tenure_months"] > 24}}, index=df.index)
""")

    assert cell.error is None, cell.text
    assert "TenureModel" in notebook.user_ns
    assert versions(name) == [1]
    assert f"ModelVersion(models:/{name}/1" in cell.stdout


def test_pyml_models_lists_registered_versions_with_their_contract_status(notebook):
    name = unique_name("listed")
    run(notebook, f"%pyml_register ChurnModel --name {name} {ARGS}")
    run(notebook, f"%pyml_register ChurnModel --name {name} {ARGS}")

    cell = run_cell(notebook, "%pyml_models")

    assert cell.error is None
    rows = [line.split() for line in cell.stdout.splitlines() if name in line]
    assert [row[-6:-2] for row in rows] == [[name, "2", "-", "passed"], [name, "1", "-", "passed"]]
    assert "<table>" in cell.result.result._repr_html_()


# -- user mistakes: one paragraph, no traceback -----------------------------------------------------------------


def test_an_undefined_variable_in_sample_is_a_usage_error(notebook):
    cell = run_cell(notebook, "%pyml_register ChurnModel --name churn --sample clients.head()")

    assert_usage_error(cell, "--sample `clients.head()` refers to a name that is not defined in the notebook",
                       "Run the cell that defines it first")


def test_a_sample_expression_with_a_syntax_error_is_a_usage_error(notebook):
    cell = run_cell(notebook, "%pyml_register ChurnModel --name churn --sample customers.head(")

    assert_usage_error(cell, "--sample `customers.head(` is not a valid Python expression")


def test_a_sample_expression_that_raises_is_a_usage_error(notebook):
    cell = run_cell(notebook, "%pyml_check ChurnModel --sample customers.sample(n=-1)")

    assert_usage_error(cell, "evaluating --sample `customers.sample(n=-1)` raised ValueError")


def test_a_missing_name_is_a_usage_error(notebook):
    cell = run_cell(notebook, f"%pyml_register ChurnModel {ARGS}")

    assert_usage_error(cell, "--name")


def test_a_missing_class_name_is_a_usage_error(notebook):
    cell = run_cell(notebook, f"%pyml_register --name churn {ARGS}")

    assert_usage_error(cell, "name the model class: %pyml_register MyModel --name NAME --sample EXPR")


def test_an_unknown_class_is_a_usage_error(notebook):
    cell = run_cell(notebook, f"%pyml_register ChrunModel --name churn {ARGS}")

    assert_usage_error(cell, "`ChrunModel` is not defined in the notebook")


def test_an_instance_instead_of_a_class_is_a_usage_error(notebook):
    run(notebook, "model = ChurnModel({'scaler': scaler, 'clf': clf})")

    cell = run_cell(notebook, f"%pyml_register model --name churn {ARGS}")

    assert_usage_error(cell, "`model` is a ChurnModel, not a class")


def test_a_class_off_the_contract_is_a_usage_error_with_the_report(notebook):
    name = unique_name("plain")
    run(notebook, "class Plain:\n    def predict(self, df):\n        return df\n")

    cell = run_cell(notebook, f"%pyml_register Plain --name {name} --sample customers.head()")

    assert_usage_error(cell, "Plain failed the contract check", "must subclass pyml_jupyter.DataFrameModel",
                       f"Nothing was registered under {name!r}")
    assert versions(name) == []


@pytest.mark.filterwarnings("ignore::pandas.errors.SettingWithCopyWarning")  # the user code mutates
def test_a_failing_check_shows_the_report_and_registers_nothing(notebook):
    name = unique_name("failing")
    run(notebook, """
        class MutatingModel(ChurnModel):
            def predict(self, df):
                df["contract"] = df["contract"].str.upper()
                return super().predict(df)
    """)

    cell = run_cell(notebook, f"%pyml_register MutatingModel --name {name} {ARGS}")

    assert_usage_error(cell, "MutatingModel failed the contract check", "- no_mutation: predict modified its input",
                       f"Nothing was registered under {name!r}")
    assert any("ContractReport(MutatingModel): FAILED" in d for d in cell.displayed)
    assert versions(name) == []


def test_an_invalid_name_is_a_usage_error(notebook):
    cell = run_cell(notebook, f'%pyml_register ChurnModel --name "churn model" {ARGS}')

    assert_usage_error(cell, "'churn model' is not a valid model name")


def test_a_cell_defining_no_model_is_a_usage_error(notebook):
    cell = run_cell(notebook, f"%%pyml_register --name churn {ARGS}\nthreshold = 0.5\n")

    assert_usage_error(cell, "the cell must define exactly one DataFrameModel/TensorModel subclass")


def test_an_artifact_expression_naming_nothing_is_a_usage_error(notebook):
    cell = run_cell(notebook, "%pyml_check ChurnModel --sample customers.head() --artifacts clf=classifier")

    assert_usage_error(cell, "artifact 'clf' `classifier` refers to a name that is not defined")


def test_a_sample_that_does_not_match_the_schema_is_one_paragraph_naming_the_column(notebook):
    name = unique_name("badsample")
    run(notebook, f"%pyml_register ChurnModel --name {name} {ARGS}")

    cell = run_cell(notebook, f'%pyml_test {name} --sample "customers.drop(columns=[\'tenure_months\']).head()"')

    assert_usage_error(cell, "tenure_months")
    assert "\n" not in str(cell.error)


def test_a_model_that_is_not_registered_gets_the_notebook_hint(notebook):
    cell = run_cell(notebook, f"%pyml_test {unique_name('nowhere')}")

    assert_usage_error(cell, "is not registered in", "Register it with %pyml_register")


def test_pyml_test_all_shows_one_parity_table_with_skipped_targets_and_why(notebook, monkeypatch):
    import os

    from pyml_jupyter.parity_table import ParityTable

    name = unique_name("parity")
    run(notebook, f"%pyml_register ChurnModel --name {name} {ARGS}")
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    monkeypatch.setenv("PATH", os.path.dirname(os.__file__))
    monkeypatch.delenv("JAVA_HOME", raising=False)

    run(notebook, f"table = %pyml_test {name} --all --sample customers.head(3)")

    table = notebook.user_ns["table"]
    assert isinstance(table, ParityTable) and table.ok
    assert len(table.data) == 3
    assert table.targets["fresh_process"].status == "match"
    assert table.targets["grpc"].status == "skipped" and "Docker engine not reachable" in table.targets["grpc"].reason


def test_pyml_deploy_takes_container_limits_and_refuses_bad_ones_in_one_paragraph(notebook):
    help_text = run_cell(notebook, "%pyml_deploy?").text
    for flag in ("--memory", "--pids-limit", "--allowed-hosts", "--token"):
        assert flag in help_text
    assert_usage_error(run_cell(notebook, "%pyml_deploy churn --memory lots"), "memory must be a size")
    assert_usage_error(run_cell(notebook, "%pyml_deploy churn --pids-limit 4"), "pids_limit")
    assert_usage_error(run_cell(notebook, "%pyml_deploy churn --allowed-hosts 'bad host'"), "allowed_hosts")


def test_pyml_prune_says_what_it_removed_and_a_version_is_a_usage_error(notebook):
    cell = run_cell(notebook, f"%pyml_prune {unique_name('never-built')} --keep 1")
    assert "Removed 0 image(s)" in cell.text

    cell = run_cell(notebook, "%pyml_prune churn/3")
    assert_usage_error(cell, "prune takes a model name, not a version")


@pytest.mark.parametrize("ref", ["churn/²", "churn/" + "9" * 5000, "churn/3@latest", "x-"])
def test_a_bad_ref_is_one_paragraph_not_a_crash(notebook, ref):
    cell = run_cell(notebook, f"%pyml_deploy {ref}")
    assert_usage_error(cell)


# -- %pyml_build, %pyml_deploy, %pyml_deployments, %pyml_test, %pyml_stop (real Docker) -------------------------


@pytest.fixture(scope="module")
def served(store, ipython, docker_engine):  # noqa: F811
    """The churn model registered from the notebook as ``pytest-<run>-magics`` (Docker's clean-up knows the name)."""
    from pyml_jupyter import api
    from pyml_jupyter.errors import NotFound

    name = model_name("magics")
    ipython.reset(new_session=False)
    run(ipython, NOTEBOOK)
    run(ipython, f"register(ChurnModel, {name!r}, sample, {{'scaler': scaler, 'clf': clf}})")
    ipython.reset(new_session=False)
    yield name
    with pytest.raises(NotFound):  # the tests stopped what they deployed
        api.stop(name)


@pytest.mark.docker
def test_pyml_build_builds_the_registered_version_and_returns_the_image(notebook, served):
    cell = run_cell(notebook, f"image = %pyml_build {served} --base-image {BASE_IMAGE}")

    assert cell.error is None, cell.text
    image = notebook.user_ns["image"]
    assert image.tag == f"pyml/{served}:1" and image.labels["pyml.version"] == "1"
    assert "build" in cell.text  # the progress, as text lines outside a notebook


@pytest.mark.docker
def test_deploy_test_list_and_stop_through_the_magics(notebook, served):
    from pyml_jupyter.displays import DeploymentTable

    deployed = run_cell(notebook, f"deployment = %pyml_deploy {served}")
    try:
        assert deployed.error is None, deployed.text
        deployment = notebook.user_ns["deployment"]
        assert deployment.url.startswith("http://127.0.0.1:")

        listed = run_cell(notebook, "%pyml_deployments")
        tested = run_cell(notebook, f"report = %pyml_test {served} --sample customers.head(8)")
    finally:
        stopped = run_cell(notebook, f"%pyml_stop {served}")

    assert isinstance(listed.result.result, DeploymentTable)
    assert [d.container_id for d in listed.result.result.deployments if d.name == served] == [deployment.container_id]
    assert tested.error is None, tested.text
    report = notebook.user_ns["report"]
    assert report.ok and report.target == "container" and report.ref == f"{served}/1"
    assert stopped.error is None, stopped.text
    assert repr(stopped.result.result).startswith("Stopped")
    assert_usage_error(run_cell(notebook, f"%pyml_stop {served}"), f"no deployment of '{served}' is running")


def test_building_a_model_that_is_not_registered_is_a_usage_error(notebook):
    name = unique_name("unregistered")

    assert_usage_error(run_cell(notebook, f"%pyml_build {name}"), f"model '{name}' is not registered")


# -- %pyml_test --target batch, %pyml_batch (real Spark) --------------------------------------------------------


@pytest.fixture(scope="module")
def customers_table(spark):  # noqa: F811
    from notebook_shell import CHURN_NOTEBOOK as source

    ns: dict = {}
    exec(compile(__import__("textwrap").dedent(source), "<churn>", "exec"), ns)  # noqa: S102
    frame = ns["customers"].head(40).reset_index(names="customer_id")
    spark.createDataFrame(frame).write.mode("overwrite").saveAsTable("magic_customers")
    return frame


@pytest.mark.spark
def test_pyml_test_on_spark_compares_with_the_notebook(notebook, served, spark):  # noqa: F811
    cell = run_cell(notebook, f"report = %pyml_test {served} --target batch --sample customers.head(8)")

    assert cell.error is None, cell.text
    assert notebook.user_ns["report"].ok and notebook.user_ns["report"].target == "batch"


@pytest.mark.spark
def test_the_cell_form_of_pyml_batch_scores_its_query_into_a_table(notebook, served, spark, customers_table):  # noqa: F811
    cell = run_cell(notebook, f"""%%pyml_batch {served} --output magic_scores --mode overwrite --keep customer_id
SELECT customer_id, tenure_months, monthly_charges, contract FROM magic_customers
""")

    assert cell.error is None, cell.text
    assert cell.result.result.rows == len(customers_table)
    scored = spark.table("magic_scores").toPandas().sort_values("customer_id").reset_index(drop=True)
    assert list(scored.columns) == ["customer_id", "churn_probability", "churn"]
    expected = notebook.user_ns["ChurnModel"](
        {"scaler": notebook.user_ns["scaler"], "clf": notebook.user_ns["clf"]}).predict(customers_table)
    assert scored["churn"].tolist() == expected["churn"].tolist()


@pytest.mark.spark
def test_the_line_form_of_pyml_batch_takes_the_query_and_refuses_an_existing_table(notebook, served, spark,  # noqa: F811
                                                                                    customers_table):
    line = f'%pyml_batch {served} --query "SELECT * FROM magic_customers" --output magic_scores_line'

    first = run_cell(notebook, line)
    again = run_cell(notebook, line)

    assert first.error is None, first.text
    assert first.result.result.rows == len(customers_table)
    assert_usage_error(again, "magic_scores_line")


def test_pyml_batch_without_a_query_is_a_usage_error(notebook):
    assert_usage_error(run_cell(notebook, "%pyml_batch churn --output scores"), "give the query")

