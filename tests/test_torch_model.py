"""A TensorModel wrapping a small ``torch.nn.Module``, from a notebook through check -> register -> container -> batch.

Real components throughout: a notebook's IPython shell, a local MLflow store, the Docker engine (one image
build, torch included) and a local Spark session. Under CI=true a missing torch, engine or Spark fails.

Spark scores rows (``mapInPandas``): a TensorModel takes named arrays whose first dimension is the batch and
whose other dimensions (here a 3-vector per row) have no column type in the batch path, so ``predict_offline``
refuses a TensorModel package with a one-line reason. The batch step therefore scores a DataFrameModel that
wraps the same module (one column per input feature) and checks it against the notebook's predictions.
"""

from __future__ import annotations

import uuid

import numpy as np
import pandas as pd
import pytest

from conftest import require_torch
from docker_fixtures import BASE_IMAGE, docker_engine  # noqa: F401
from mlflow_fixtures import use_tracking_uri
from notebook_shell import ipython, run  # noqa: F401
from spark_fixtures import spark, workdir  # noqa: F401

NOTEBOOK = """
    import numpy as np
    import pandas as pd
    import torch

    from pyml_jupyter import DataFrameModel, TensorModel

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2)).double().eval()
    x = np.random.default_rng(1).normal(size=(6, 3))


    class TorchScorer(TensorModel):
        def __init__(self, artifacts):
            self.net = artifacts["net"]

        def predict(self, tensors):
            with torch.no_grad():
                y = self.net(torch.from_numpy(tensors["x"])).numpy()
            return {"y": y, "cls": y.argmax(axis=1).astype(np.int64)}


    class TorchRowScorer(DataFrameModel):
        def __init__(self, artifacts):
            self.net = artifacts["net"]

        def predict(self, df):
            with torch.no_grad():
                y = self.net(torch.from_numpy(df[["a", "b", "c"]].to_numpy(dtype=np.float64))).numpy()
            return pd.DataFrame({"y0": y[:, 0], "y1": y[:, 1], "cls": y.argmax(axis=1).astype(np.int64)},
                                index=df.index)


    rows = pd.DataFrame(x, columns=["a", "b", "c"])
"""

pytestmark = [pytest.mark.docker, pytest.mark.spark]


@pytest.fixture(scope="module")
def notebook(ipython, tmp_path_factory):  # noqa: F811
    """The notebook above, run in a real IPython shell against a local MLflow store of this module's own."""
    require_torch()
    folder = tmp_path_factory.mktemp("torch")
    with use_tracking_uri(f"sqlite:///{folder / 'mlflow.db'}", folder):
        ipython.reset(new_session=False)
        run(ipython, NOTEBOOK)
        yield ipython
        ipython.reset(new_session=False)


@pytest.fixture(scope="module")
def registered(notebook):
    """Both models registered under names unique to this run: ``{"tensor": ref, "rows": ref}``."""
    from pyml_jupyter import register

    ns = notebook.user_ns
    tag = uuid.uuid4().hex[:8]
    tensor = register(ns["TorchScorer"], f"pytest-torch-{tag}", {"x": ns["x"]}, {"net": ns["net"]}, namespace=ns)
    rows = register(ns["TorchRowScorer"], f"pytest-torch-rows-{tag}", ns["rows"], {"net": ns["net"]}, namespace=ns)
    return {"tensor": f"{tensor.name}/{tensor.version}", "rows": f"{rows.name}/{rows.version}"}


def notebook_predictions(notebook, model: str, inputs: str):
    """What the notebook's own instance of ``model`` predicts on ``inputs`` (a tensor dict for TorchScorer)."""
    ns = notebook.user_ns
    given = {"x": ns[inputs]} if model == "TorchScorer" else ns[inputs]
    return ns[model]({"net": ns["net"]}).predict(given)


def test_the_check_passes_and_pins_torch(notebook):
    from pyml_jupyter import check

    ns = notebook.user_ns
    report = check(ns["TorchScorer"], {"x": ns["x"]}, {"net": ns["net"]}, namespace=ns)

    assert report.ok, report.summary()
    requirements = (report.package_dir / "requirements.txt").read_text()
    assert f"torch=={require_torch().__version__.split('+')[0]}" in requirements
    assert (report.package_dir / "artifacts" / "net.pt").is_file()


def test_the_registered_version_loads_and_predicts_like_the_notebook(notebook, registered):
    from pyml_jupyter import api

    expected = notebook_predictions(notebook, "TorchScorer", "x")
    actual = api.load(registered["tensor"]).predict({"x": notebook.user_ns["x"]})

    assert set(actual) == {"y", "cls"}
    np.testing.assert_array_equal(actual["y"], expected["y"])
    np.testing.assert_array_equal(actual["cls"], expected["cls"])


def test_the_container_predicts_exactly_what_the_notebook_predicted(notebook, registered, docker_engine):  # noqa: F811
    from pyml_jupyter import api

    expected = notebook_predictions(notebook, "TorchScorer", "x")
    deployment = api.deploy(registered["tensor"], base_image=BASE_IMAGE)
    try:
        actual = deployment.predict({"x": notebook.user_ns["x"]})
        report = api.test(registered["tensor"], {"x": notebook.user_ns["x"]})
    finally:
        api.stop(registered["tensor"])
        from pyml_jupyter.images.builder import remove_image

        name, version = registered["tensor"].split("/")
        remove_image(name, version, client=docker_engine, force=True)

    assert actual["y"].dtype == expected["y"].dtype and actual["cls"].dtype == expected["cls"].dtype
    np.testing.assert_array_equal(actual["y"], expected["y"])
    np.testing.assert_array_equal(actual["cls"], expected["cls"])
    assert report.ok


def test_spark_refuses_the_tensor_model_and_says_why(registered, spark):  # noqa: F811
    from pyml_jupyter import api
    from pyml_jupyter.errors import BatchError

    spark.createDataFrame(pd.DataFrame({"x": [1.0]})).createOrReplaceTempView("torch_tensor_src")

    with pytest.raises(BatchError, match="DataFrameModel packages"):
        api.predict_offline(registered["tensor"], "SELECT x FROM torch_tensor_src", "torch_tensor_out", spark=spark)


def test_the_same_module_scores_rows_on_spark_like_the_notebook(notebook, registered, spark):  # noqa: F811
    from pyml_jupyter import api

    rows = notebook.user_ns["rows"]
    source = rows.assign(id=np.arange(len(rows), dtype=np.int64))
    spark.createDataFrame(source).write.mode("overwrite").saveAsTable("torch_rows_src")

    result = api.predict_offline(registered["rows"], "SELECT id, a, b, c FROM torch_rows_src", "torch_rows_out",
                                 spark=spark, keep="id")

    assert result.rows == len(rows)
    scored = spark.table("torch_rows_out").toPandas().sort_values("id").reset_index(drop=True)
    expected = notebook_predictions(notebook, "TorchRowScorer", "rows")
    # Spark hands the model its rows in partitions, and torch's matrix product rounds the last bit differently
    # for other batch sizes: equal to the notebook's within a few ulps, the classes exactly.
    np.testing.assert_allclose(scored["y0"].to_numpy(), expected["y0"].to_numpy(), rtol=1e-12, atol=0)
    np.testing.assert_allclose(scored["y1"].to_numpy(), expected["y1"].to_numpy(), rtol=1e-12, atol=0)
    np.testing.assert_array_equal(scored["cls"].to_numpy(), expected["cls"].to_numpy())
