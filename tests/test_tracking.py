"""pyml_jupyter.tracking: the registered version as MLflow holds it, the package cache, version tags, and
register()'s all-or-nothing logging (a failure half-way leaves no run, model or version behind). Names and
references are specified in test_names.

The store is real: a local SQLite file and a real ``mlflow server`` process (each test runs against both).
"""

from __future__ import annotations

import uuid

import pytest

from mlflow_fixtures import all_runs, logged_models, mlflow_server, registered_models, store  # noqa: F401
from notebook_shell import CHURN_NOTEBOOK, ipython, run, shell  # noqa: F401
from pyml_jupyter import tracking
from pyml_jupyter.errors import NotFound

REGISTER = "registered = register(ChurnModel, {name!r}, sample, {{'scaler': scaler, 'clf': clf}})"


def unique_name(label: str) -> str:
    return f"{label}-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def notebook(store, shell):
    """A fresh notebook in which the churn model, its artifacts and its sample are defined."""
    run(shell, CHURN_NOTEBOOK)
    return shell


@pytest.fixture(scope="module")
def registered(store, ipython):
    """The churn model registered twice under one name: ``(name, [ModelVersion v1, v2])``."""
    ipython.reset(new_session=False)
    run(ipython, CHURN_NOTEBOOK)
    name = unique_name("tracked")
    versions = []
    for _ in range(2):
        run(ipython, REGISTER.format(name=name))
        versions.append(ipython.user_ns["registered"])
    ipython.reset(new_session=False)
    return name, versions


# -- the registered version -------------------------------------------------------------------------------------


def test_a_registered_version_has_its_uri_reference_and_contract_status(registered):
    name, (first, second) = registered

    assert (second.name, second.version) == (name, 2)
    assert second.uri == f"models:/{name}/2" and second.ref == f"{name}/2"
    assert second.contract_status == "passed"
    assert second.to_dict()["uri"] == second.uri
    assert repr(second).startswith(f"ModelVersion(models:/{name}/2, run_id={second.run_id}")


def test_resolve_version_finds_the_latest_or_the_one_asked_for(registered):
    name, _ = registered

    assert int(tracking.resolve_version(name).version) == 2
    assert int(tracking.resolve_version(name, 1).version) == 1


def test_an_unknown_model_or_version_is_not_found_with_the_register_hint(registered):
    from pyml_jupyter.errors import HINT_REGISTER

    name, _ = registered

    with pytest.raises(NotFound, match="is not registered in") as missing:
        tracking.resolve_version(unique_name("missing"))
    assert missing.value.hint == HINT_REGISTER  # each face words "register it" itself
    with pytest.raises(NotFound, match=f"'{name}/7' is not registered"):
        tracking.resolve_version(name, 7)


def test_the_package_is_downloaded_once_into_the_cache(registered):
    name, _ = registered

    package = tracking.download_package(name, 1)
    marker = package / "pyml.json"
    before = marker.stat().st_mtime_ns

    assert (package / "model.py").is_file() and (package / "artifacts").is_dir()
    assert tracking.download_package(name, 1) == package
    assert marker.stat().st_mtime_ns == before
    assert tracking.download_package(name, 2) != package


def test_version_tags_are_set_and_listed_with_the_versions_newest_first(registered):
    name, _ = registered

    tracking.set_version_tags(name, 2, {tracking.TAG_IMAGE_TAG: "pyml/x:2"})

    (versions,) = [v for rm, v in tracking.list_registered() if rm.name == name]
    assert [int(v.version) for v in versions] == [2, 1]
    assert versions[0].tags[tracking.TAG_IMAGE_TAG] == "pyml/x:2"
    assert versions[0].tags[tracking.TAG_STATUS] == "passed"


def test_the_ui_link_is_the_server_or_the_configured_url(store, monkeypatch):
    monkeypatch.delenv("PYML_MLFLOW_UI", raising=False)
    expected = f"{store}/#/models/churn" if store.startswith("http") else None
    assert tracking.ui_url("#/models/churn") == expected

    monkeypatch.setenv("PYML_MLFLOW_UI", "https://mlflow.example.org/")
    assert tracking.ui_url("#/models/churn") == "https://mlflow.example.org/#/models/churn"


# -- all or nothing ---------------------------------------------------------------------------------------------


def test_an_unreachable_registry_fails_before_anything_is_logged(notebook, monkeypatch):
    from mlflow_fixtures import registry_uri
    from processes import free_port
    from pyml_jupyter.errors import PymlError

    name = unique_name("unreachable")
    runs_before, models_before = len(all_runs()), logged_models()
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    with registry_uri(f"http://127.0.0.1:{free_port()}"):
        result = notebook.run_cell(REGISTER.format(name=name))

    error = result.error_in_exec
    assert isinstance(error, PymlError), error
    assert f"registering {name!r} in MLflow" in error.message and "nothing was kept" in error.message
    assert "Connection refused" in error.message
    assert len(all_runs()) == runs_before
    assert logged_models() == models_before


def test_an_artifact_store_failing_mid_way_leaves_no_run_and_no_model_behind(notebook, tmp_path):
    """A real failure after the run was created: the experiment's artifact location cannot be written."""
    import mlflow

    from pyml_jupyter.errors import PymlError

    (tmp_path / "a-file").write_text("not a directory")
    experiment = unique_name("unwritable")
    mlflow.create_experiment(experiment, artifact_location=(tmp_path / "a-file" / "artifacts").as_uri())
    name = unique_name("midway")
    active_before, models_before = {r.info.run_id for r in all_runs("ACTIVE_ONLY")}, logged_models()

    result = notebook.run_cell(REGISTER.format(name=name)[:-1] + f", experiment={experiment!r})")

    error = result.error_in_exec
    assert isinstance(error, PymlError), error
    assert "nothing was kept" in error.message
    assert {r.info.run_id for r in all_runs("ACTIVE_ONLY")} == active_before
    (deleted,) = [r for r in all_runs("DELETED_ONLY") if r.data.tags.get("mlflow.runName") == f"pyml-{name}"]
    assert deleted.info.lifecycle_stage == "deleted"
    assert registered_models(name) == []
    assert logged_models() == models_before


def fail_creating_versions(monkeypatch) -> None:
    """The registry store creates registered models but fails to create versions (cannot be produced for real)."""
    from mlflow.exceptions import MlflowException
    from mlflow.store.model_registry.rest_store import RestStore
    from mlflow.store.model_registry.sqlalchemy_store import SqlAlchemyStore

    def fail(self, *args, **kwargs):
        raise MlflowException("the model version store is unavailable")

    for store_class in (SqlAlchemyStore, RestStore):
        monkeypatch.setattr(store_class, "create_model_version", fail)


def test_a_failure_creating_the_version_leaves_no_registered_model_behind(notebook, monkeypatch):
    from pyml_jupyter.errors import PymlError

    name = unique_name("half")
    active_before = {r.info.run_id for r in all_runs("ACTIVE_ONLY")}
    models_before = logged_models()
    fail_creating_versions(monkeypatch)

    result = notebook.run_cell(REGISTER.format(name=name))

    assert isinstance(result.error_in_exec, PymlError)
    assert "the model version store is unavailable" in result.error_in_exec.message
    assert registered_models(name) == []
    assert {r.info.run_id for r in all_runs("ACTIVE_ONLY")} == active_before
    assert logged_models() == models_before


def test_a_failed_new_version_keeps_the_versions_already_registered(notebook, monkeypatch):
    from mlflow import MlflowClient

    name = unique_name("kept")
    run(notebook, REGISTER.format(name=name))

    fail_creating_versions(monkeypatch)
    result = notebook.run_cell(REGISTER.format(name=name))
    monkeypatch.undo()

    assert result.error_in_exec is not None
    versions = MlflowClient().search_model_versions(f"name = '{name}'")
    assert [int(v.version) for v in versions] == [1]
