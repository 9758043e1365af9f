"""A TensorModel wrapping a small ``torch.nn.Module``, from a notebook through check -> register -> container -> batch.

Real components throughout: a notebook's IPython shell, a local MLflow store, the Docker engine (one image
build, torch included) and a local Spark session. Under CI=true a missing torch, engine or Spark fails.

On Spark each table row holds one element of every tensor along the first axis: the input ``x`` (shape
(-1, 3)) is an ``ARRAY<DOUBLE>`` column, the outputs ``y`` (-1, 2) and ``cls`` (-1,) an ``ARRAY<DOUBLE>`` and a
``BIGINT`` column; the TensorModel itself is scored and compared with the notebook's predictions.
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
    import torch

    from pyml_jupyter import TensorModel

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
    """The TensorModel registered under a name unique to this run: ``{"tensor": ref}``."""
    from pyml_jupyter import register

    ns = notebook.user_ns
    tensor = register(ns["TorchScorer"], f"pytest-torch-{uuid.uuid4().hex[:8]}", {"x": ns["x"]}, {"net": ns["net"]},
                      namespace=ns)
    return {"tensor": f"{tensor.name}/{tensor.version}"}


def notebook_predictions(notebook, model: str, inputs: str):
    """What the notebook's own instance of ``model`` predicts on the tensor ``inputs`` (as ``x``)."""
    ns = notebook.user_ns
    return ns[model]({"net": ns["net"]}).predict({"x": ns[inputs]})


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


def test_spark_scores_the_tensor_model_like_the_notebook(notebook, registered, spark):  # noqa: F811
    from pyml_jupyter import api
    from pyml_jupyter.comparison import compare_values

    x = notebook.user_ns["x"]
    source = pd.DataFrame({"id": np.arange(len(x), dtype=np.int64), "x": list(x)})
    spark.createDataFrame(source).write.mode("overwrite").saveAsTable("torch_tensor_src")

    result = api.predict_offline(registered["tensor"], "SELECT id, x FROM torch_tensor_src", "torch_tensor_out",
                                 spark=spark, keep="id")

    assert result.rows == len(x) and result.columns == ["id", "y", "cls"]
    scored = spark.table("torch_tensor_out").toPandas().sort_values("id").reset_index(drop=True)
    expected = notebook_predictions(notebook, "TorchScorer", "x")
    # Spark hands the model its rows in partitions, and torch's matrix product may round the last bit differently
    # for other batch sizes: floats agree within the comparison's tolerances, the classes exactly.
    y = np.stack(scored["y"].to_list())
    assert y.shape == expected["y"].shape
    assert compare_values(expected["y"].ravel(), y.ravel(), tolerant=True)[0].all()
    assert compare_values(expected["cls"], scored["cls"].to_numpy(), tolerant=False)[0].all()
