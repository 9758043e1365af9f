"""Registry push against a REAL registry (Debian's docker-registry on a loopback port) and a real Docker engine:
push, delete the local image, pull, run, predict; and the failures, each leaving nothing half-done."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from docker_fixtures import docker_engine, model_name, pyml_cache  # noqa: F401
from pyml_jupyter import api, tracking
from pyml_jupyter.deployments import run_deployment, stop_deployment
from pyml_jupyter.errors import NotFound, PymlError
from pyml_jupyter.registry import TAG_PUSHED, PushError, validate_registry
from pyml_jupyter.serving.contract import DataFrameModel
from processes import free_port
from registry_fixtures import image_registry, readonly_registry  # noqa: F401

pytestmark = pytest.mark.docker


class Halver(DataFrameModel):
    def predict(self, df):
        return pd.DataFrame({"y": df["x"] / 2.0}, index=df.index)


@pytest.fixture(scope="module")
def store(tmp_path_factory, docker_engine, pyml_cache):  # noqa: F811
    """v1 built (its image on the engine), v2 registered without an image; v1 is the champion."""
    root = tmp_path_factory.mktemp("registry-store")
    name = model_name("push")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'mlflow.db'}")
        mp.delenv("MLFLOW_REGISTRY_URI", raising=False)
        api.register(Halver, name, pd.DataFrame({"x": [1.0, 3.0]}))
        api.register(Halver, name, pd.DataFrame({"x": [2.0, 4.0]}))
        image = api.build(f"{name}/1")
        tracking.set_alias(name, "champion", 1)
        yield {"name": name, "image": image}


def _registry_tags(client, repo: str) -> set[str]:
    return {t for image in client.images.list(name=repo) for t in image.tags}


def test_push_delete_pull_run_predict(store, image_registry, docker_engine):  # noqa: F811
    pushed = api.push(f"{store['name']}/1", image_registry)
    repo = f"{image_registry}/pyml/{store['name']}"
    assert pushed.repository == repo and pushed.tags == ["1", "champion"]
    assert pushed.digest.startswith("sha256:") and pushed.image == f"{repo}:1"
    assert tracking.resolve_version(store["name"], 1).tags[TAG_PUSHED] == f"{repo}:1@{pushed.digest}"
    # the model list (what the panel shows) says where v1 was pushed, and that v2 never was
    listed = {v["version"]: v for m in api.list_models() if m.name == store["name"] for v in m.versions}
    assert listed[1]["pushed_image"] == f"{repo}:1@{pushed.digest}" and listed[2]["pushed_image"] is None
    # Another engine has only the registry: remove every local copy, pull, run, predict.
    docker_engine.images.remove(store["image"].image_id, force=True)
    with pytest.raises(Exception):
        docker_engine.images.get(f"{repo}:1")
    pulled = docker_engine.images.pull(repo, tag="champion")
    assert pulled.labels["pyml.model"] == store["name"] and pulled.labels["pyml.version"] == "1"
    deployment = run_deployment(f"{repo}:champion", name=store["name"], version="1", client=docker_engine)
    try:
        prediction = deployment.predict(pd.DataFrame({"x": [5.0, -1.0]}))
        np.testing.assert_array_equal(prediction["y"].to_numpy(), [2.5, -0.5])
    finally:
        stop_deployment(store["name"], "1", client=docker_engine)


def test_the_push_reports_layer_progress(store, image_registry):  # noqa: F811
    from pyml_jupyter.progress import Progress

    api.build(f"{store['name']}/1")  # from the layer cache: the round trip above may have removed the image
    progress = Progress("push")
    api.push(f"{store['name']}/1", image_registry, progress=progress)
    log = "\n".join(progress.tail(200))
    assert "Pushed" in log or "Layer already exists" in log
    assert progress.stage == "pushed" and progress.fraction == 1.0


def test_an_unreachable_registry_fails_before_anything_is_tagged(store, docker_engine):  # noqa: F811
    api.build(f"{store['name']}/1")
    registry = f"127.0.0.1:{free_port()}"
    with pytest.raises(PushError, match="is not reachable") as failed:
        api.push(f"{store['name']}/1", registry)
    assert "Nothing was tagged or pushed" in failed.value.message and "start it or check the address" in \
        failed.value.message and "\n" not in failed.value.message
    assert _registry_tags(docker_engine, f"{registry}/pyml/{store['name']}") == set()


def test_a_refused_push_removes_its_tags_and_reports_nothing_pushed(store, readonly_registry, docker_engine):  # noqa: F811
    api.build(f"{store['name']}/1")
    before = tracking.resolve_version(store["name"], 1).tags.get(TAG_PUSHED)
    with pytest.raises(PushError) as failed:
        api.push(f"{store['name']}/1", readonly_registry)
    assert "refused" in failed.value.message and "No tag reached the registry" in failed.value.message
    assert "docker login" in failed.value.message and "\n" not in failed.value.message
    assert failed.value.details == {"pushed": [], "failed": "1"}
    assert _registry_tags(docker_engine, f"{readonly_registry}/pyml/{store['name']}") == set()
    assert tracking.resolve_version(store["name"], 1).tags.get(TAG_PUSHED) == before


def test_a_version_without_an_image_is_not_found(store, image_registry, docker_engine):  # noqa: F811
    from pyml_jupyter.cli import HINTS
    from pyml_jupyter.errors import with_hint

    before = tracking.resolve_version(store["name"], 2).tags.get(TAG_PUSHED)
    with pytest.raises(NotFound, match="has no image on this Docker engine to push") as missing:
        api.push(f"{store['name']}/2", image_registry)
    assert "\n" not in missing.value.message and "pyml build" in with_hint(missing.value, HINTS)
    repo = f"{image_registry}/pyml/{store['name']}"
    assert f"{repo}:2" not in _registry_tags(docker_engine, repo)
    assert tracking.resolve_version(store["name"], 2).tags.get(TAG_PUSHED) == before


def test_an_unknown_alias_is_not_found_and_nothing_is_tagged(store, image_registry, docker_engine):  # noqa: F811
    with pytest.raises(NotFound, match="has no alias 'nobody'") as unknown:
        api.push(f"{store['name']}@nobody", image_registry)
    assert "\n" not in unknown.value.message and "promote(" in unknown.value.message
    repo = f"{image_registry}/pyml/{store['name']}"
    assert f"{repo}:nobody" not in _registry_tags(docker_engine, repo)


@pytest.mark.parametrize("registry", ["http://r.example.com", "user:pw@r.example.com", "r.example.com:99999",
                                      "", "r .example.com", "r.example.com/UPPER"])
def test_a_malformed_registry_address_is_refused(registry):
    with pytest.raises(PymlError, match="is not a registry address"):
        validate_registry(registry)


def test_registry_addresses_with_port_and_path_are_accepted():
    assert validate_registry("127.0.0.1:5000") == ("127.0.0.1", 5000)
    assert validate_registry("registry.example.com/team/ml") == ("registry.example.com", 443)
