"""Never the wrong model: images, containers and cached packages belong to one version of one store.

Two real MLflow stores (SQLite files) both hold ``NAME`` v1, of different models; a model is deleted and
registered again under the same name. Deploying through the core API with a real Docker engine must always
serve the version the current store means, never the image or container of another.
"""

from __future__ import annotations

import uuid

import pandas as pd
import pytest

from docker_fixtures import docker_engine, model_name, pyml_cache  # noqa: F401
from mlflow_fixtures import use_tracking_uri
from pyml_jupyter import api
from pyml_jupyter.serving.contract import DataFrameModel

pytestmark = pytest.mark.docker

SAMPLE = pd.DataFrame({"x": [1.0, 2.0, 3.5]})


class PlusOne(DataFrameModel):
    """y = x + 1"""

    def predict(self, df):
        return pd.DataFrame({"y": df["x"] + 1.0}, index=df.index)


class PlusTen(DataFrameModel):
    """y = x + 10"""

    def predict(self, df):
        return pd.DataFrame({"y": df["x"] + 10.0}, index=df.index)


def stop_quietly(name: str) -> None:
    from pyml_jupyter.errors import NotFound

    try:
        api.stop(name)
    except NotFound:
        pass


def served_y(deployment) -> list[float]:
    return deployment.predict(SAMPLE)["y"].tolist()


@pytest.fixture
def in_store(pyml_cache, monkeypatch):
    """``in_store(folder)``: use the SQLite store in ``folder``, with the one package cache of the session."""
    import contextlib

    @contextlib.contextmanager
    def use(folder):
        folder.mkdir(parents=True, exist_ok=True)
        with use_tracking_uri(f"sqlite:///{folder / 'mlflow.db'}", folder):
            monkeypatch.setenv("PYML_CACHE_DIR", str(pyml_cache))  # shared: keyed by store and run inside
            yield

    return use


def test_two_stores_with_the_same_name_and_version_each_get_their_own_image_and_container(
        docker_engine, in_store, tmp_path):
    name = model_name("stores")
    try:
        with in_store(tmp_path / "a"):
            assert api.register(PlusOne, name, SAMPLE).version == 1
            first = api.deploy(name)
            assert served_y(first) == [2.0, 3.0, 4.5]
            store_a = api.store_id()
        with in_store(tmp_path / "b"):
            registered = api.register(PlusTen, name, SAMPLE)
            assert registered.version == 1 and api.store_id() != store_a
            second = api.deploy(name)  # neither the container nor the image of store A's v1
            assert served_y(second) == [11.0, 12.0, 13.5]
            assert second.run_id == registered.run_id and second.store == api.store_id()
            assert second.image_id != first.image_id
            (info,) = [m for m in api.list_models() if m.name == name]
            assert info.versions[0]["image"]["id"] == second.image_id
            assert info.versions[0]["deployment"]["container_id"] == second.container_id
            assert api.load(name).predict(SAMPLE)["y"].tolist() == [11.0, 12.0, 13.5]
        with in_store(tmp_path / "a"):
            (info,) = [m for m in api.list_models() if m.name == name]
            assert info.versions[0]["deployment"] is None  # store B's container is not store A's deployment
            again = api.deploy(name)  # store A's image is still there (tagged by its run) and used again
            assert again.image_id == first.image_id
            assert served_y(again) == [2.0, 3.0, 4.5]
            assert api.load(name).predict(SAMPLE)["y"].tolist() == [2.0, 3.0, 4.5]
    finally:
        stop_quietly(name)


def test_a_model_deleted_and_registered_again_is_built_and_served_anew(docker_engine, in_store, tmp_path):
    from mlflow import MlflowClient

    name = model_name("recreated")
    with in_store(tmp_path / "store"):
        try:
            api.register(PlusOne, name, SAMPLE)
            old = api.deploy(f"{name}/1")
            assert served_y(old) == [2.0, 3.0, 4.5]
            assert api.load(name).predict(SAMPLE)["y"].tolist() == [2.0, 3.0, 4.5]  # now in the package cache

            MlflowClient().delete_registered_model(name)
            again = api.register(PlusTen, name, SAMPLE)
            assert again.version == 1

            assert api.load(name).predict(SAMPLE)["y"].tolist() == [11.0, 12.0, 13.5]  # not the cached one
            new = api.deploy(f"{name}/1")
            assert new.image_id != old.image_id and new.run_id == again.run_id
            assert served_y(new) == [11.0, 12.0, 13.5]
        finally:
            stop_quietly(name)


def test_a_name_differing_only_in_case_from_a_registered_model_is_refused(in_store, tmp_path):
    from pyml_jupyter.errors import InvalidName

    name = f"cased-{uuid.uuid4().hex[:8]}"
    with in_store(tmp_path / "store"):
        api.register(PlusOne, name, SAMPLE)
        with pytest.raises(InvalidName, match=f"registered model {name!r}"):
            api.register(PlusTen, name.upper(), SAMPLE)
        assert [m.name for m in api.list_models()] == [name]


def test_concurrent_downloads_of_a_package_all_get_the_whole_package_and_leave_no_temporary_folder(
        in_store, tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    name = f"download-{uuid.uuid4().hex[:8]}"
    with in_store(tmp_path / "store"):
        registered = api.register(PlusOne, name, SAMPLE)
        with ThreadPoolExecutor(4) as pool:
            paths = set(pool.map(lambda _: api.package_path(name), range(4)))
        (path,) = paths
        assert (path / "pyml.json").is_file()
        assert api.store_id() in path.parts and registered.run_id in path.parts  # keyed by store and run
        assert not list(path.parents[2].glob(".download-*"))
