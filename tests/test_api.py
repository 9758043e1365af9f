"""pyml_jupyter.api, the functions every face calls: check, register, list, load, build, deploy, test, stop, batch.

A real local MLflow store, a real Docker engine (one image of the churn model) and a real Spark session; the
model is defined in a real IPython shell, as in a notebook. register() itself is specified in test_register,
its all-or-nothing logging in test_tracking; the magics in front of these functions in test_magics.
"""

from __future__ import annotations

import pandas as pd
import pytest

from docker_fixtures import BASE_IMAGE, docker_engine, model_name  # noqa: F401
from mlflow_fixtures import use_tracking_uri
from notebook_shell import CHURN_NOTEBOOK, ipython, run, shell  # noqa: F401
from pyml_jupyter import api, tracking
from pyml_jupyter.errors import InvalidName, NotFound, PymlError
from spark_fixtures import spark, workdir  # noqa: F401

REGISTER = "registered = register(ChurnModel, {name!r}, sample, {{'scaler': scaler, 'clf': clf}})"


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    folder = tmp_path_factory.mktemp("api")
    with use_tracking_uri(f"sqlite:///{folder / 'mlflow.db'}", folder) as uri:
        yield uri


@pytest.fixture
def notebook(store, shell):
    run(shell, CHURN_NOTEBOOK)
    return shell


@pytest.fixture(scope="module")
def churn(store, ipython):
    """The churn model registered once as ``pytest-<run>-api`` (Docker's clean-up knows the name): its sample,
    customers and the notebook's predictions on them (the namespace is reset after)."""
    ipython.reset(new_session=False)
    run(ipython, CHURN_NOTEBOOK)
    run(ipython, REGISTER.format(name=model_name("api")))
    ns = ipython.user_ns
    model = ns["ChurnModel"]({"scaler": ns["scaler"], "clf": ns["clf"]})
    churn = {"sample": ns["sample"].copy(), "customers": ns["customers"].copy()}
    churn["expected"] = {"sample": model.predict(churn["sample"]), "customers": model.predict(churn["customers"])}
    ipython.reset(new_session=False)
    return churn


def expected(churn, rows: pd.DataFrame) -> pd.DataFrame:
    """The notebook's predictions on ``rows`` (the sample or leading customers)."""
    if rows.equals(churn["sample"]):
        return churn["expected"]["sample"]
    return churn["expected"]["customers"].loc[rows.index]


# -- check, list, load ------------------------------------------------------------------------------------------


def test_check_returns_the_report_without_registering_anything(notebook):
    ns = notebook.user_ns
    before = len(tracking.list_registered())

    report = api.check(ns["ChurnModel"], ns["sample"], {"scaler": ns["scaler"], "clf": ns["clf"]}, namespace=ns)

    assert report.ok and report.package_dir.is_dir()
    assert len(tracking.list_registered()) == before


def test_list_models_shows_versions_newest_first_with_their_contract_status(notebook):
    name = model_name("listed")
    run(notebook, REGISTER.format(name=name))
    run(notebook, REGISTER.format(name=name))

    (model,) = [m for m in api.list_models() if m.name == name]
    assert [v["version"] for v in model.versions] == [2, 1]
    assert [v["contract_status"] for v in model.versions] == ["passed", "passed"]
    assert model.versions[0]["uri"] == f"models:/{name}/2"
    assert model.latest_version == 2


def test_load_and_package_path_give_the_registered_version(churn):
    ref = f"{model_name('api')}/1"
    sample = churn["sample"]

    assert (api.package_path(ref) / "pyml.json").is_file()
    pd.testing.assert_frame_equal(api.load(ref).predict(sample), expected(churn, sample), check_exact=True)


def test_config_names_the_store_and_hides_a_database_password(store):
    import mlflow

    assert api.config()["tracking_uri"] == store

    mlflow.set_tracking_uri("postgresql://mlflow:s3cret@db.internal:5432/mlflow")
    try:
        shown = api.config()["tracking_uri"]
    finally:
        mlflow.set_tracking_uri(store)
    assert shown == "postgresql://***@db.internal:5432/mlflow"  # the user may be a token too


def test_a_bad_reference_or_target_is_refused_before_anything_runs(churn):
    with pytest.raises(InvalidName):
        api.build("no such model")
    with pytest.raises(NotFound, match="is not registered"):
        api.deploy(model_name("never-registered"))
    with pytest.raises(PymlError, match="target must be one of all, container, batch"):
        api.test(model_name("api"), target="kubernetes")


# -- build, deploy, test, stop (real Docker) --------------------------------------------------------------------


@pytest.fixture(scope="module")
def image(churn, docker_engine):  # noqa: F811
    return api.build(model_name("api"), base_image=BASE_IMAGE)


@pytest.mark.docker
def test_build_tags_the_version_with_its_image_and_list_models_shows_it(image):
    name = model_name("api")
    tags = tracking.resolve_version(name, 1).tags

    assert image.tag == f"pyml/{name}:1"
    assert tags[tracking.TAG_IMAGE_ID] == image.image_id and tags[tracking.TAG_IMAGE_TAG] == image.tag
    (model,) = [m for m in api.list_models() if m.name == name]
    assert model.versions[0]["image"]["tag"] == image.tag
    assert model.versions[0]["deployment"] is None


@pytest.mark.docker
def test_deploy_runs_the_built_image_and_test_compares_it_with_the_notebook(churn, image):
    name = model_name("api")
    deployment = api.deploy(name)
    try:
        assert deployment.image_id == image.image_id  # no second build
        assert [d.container_id for d in api.deployments() if d.name == name] == [deployment.container_id]
        (model,) = [m for m in api.list_models() if m.name == name]
        assert model.versions[0]["deployment"]["url"] == deployment.url

        report = api.test(name, churn["customers"].head(20))

        assert report.ok and report.target == "container" and report.ref == f"{name}/1"
        pd.testing.assert_frame_equal(deployment.predict(churn["sample"]), expected(churn, churn["sample"]),
                                      check_exact=True)
    finally:
        stopped = api.stop(name)
    assert [d.container_id for d in stopped] == [deployment.container_id]
    assert all(d.name != name for d in api.deployments())
    with pytest.raises(NotFound, match="no deployment"):
        api.stop(name)


# -- Spark --------------------------------------------------------------------------------------------------------


@pytest.mark.spark
def test_test_on_spark_and_predict_offline_score_like_the_notebook(churn, spark):  # noqa: F811
    name = model_name("api")
    customers = churn["customers"].head(50).reset_index(names="id")
    spark.createDataFrame(customers).write.mode("overwrite").saveAsTable("api_customers")

    report = api.test(name, churn["sample"], target="batch", spark=spark)
    result = api.predict_offline(name, "SELECT * FROM api_customers", "api_scores", spark=spark, keep="id")

    assert report.ok and report.target == "batch"
    assert result.rows == 50 and result.ref == f"{name}/1"
    scored = spark.table("api_scores").toPandas().sort_values("id").reset_index(drop=True)
    want = expected(churn, churn["customers"].head(50))
    assert scored["churn"].tolist() == want["churn"].tolist()
    assert scored["churn_probability"].tolist() == pytest.approx(want["churn_probability"].tolist(), abs=1e-12)
