"""Fixtures for the tests that need a real Docker engine (imported by test_images_build and test_deployments).

Every image and container made here belongs to a model named ``pytest-<random>``, and is removed at the end
of the session; the base image and the engine's build cache are kept, so later runs build fast.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import textwrap
import uuid
from pathlib import Path

import pytest

from conftest import IN_CI, write_example_package

RUN_ID = uuid.uuid4().hex[:8]
BASE_IMAGE = os.environ.get("PYML_TEST_BASE_IMAGE", f"python:{sys.version_info.major}.{sys.version_info.minor}-slim")
_created_models: set[str] = set()


def model_name(suffix: str = "") -> str:
    """A model name unique to this test session: ``pytest-<run>[-suffix]``."""
    name = f"pytest-{RUN_ID}" + (f"-{suffix}" if suffix else "")
    _created_models.add(name)
    return name


@pytest.fixture(scope="session")
def docker_engine():
    """A docker client, or a skip (a failure under CI=true) when no engine answers."""
    from pyml_jupyter.errors import BuildError
    from pyml_jupyter.images.builder import docker_client

    try:
        client = docker_client()
    except BuildError as exc:
        if IN_CI:
            pytest.fail(f"CI needs a Docker engine: {exc.message}")
        pytest.skip(exc.message)
    try:
        client.images.get(BASE_IMAGE)
    except Exception:  # noqa: BLE001 - docker.errors.ImageNotFound
        message = f"base image {BASE_IMAGE} is missing: run .ci/base-image.sh"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    yield client
    _cleanup(client)


def _cleanup(client) -> None:
    for name in sorted(_created_models):
        for container in client.containers.list(all=True, filters={"label": f"pyml.model={name}"}):
            container.remove(force=True)
    for name in sorted(_created_models):
        for image in client.images.list(filters={"label": f"pyml.model={name}"}):
            try:
                client.images.remove(image.id, force=True)
            except Exception:  # noqa: BLE001 - already removed with another tag
                pass


@pytest.fixture(scope="session")
def pyml_cache(tmp_path_factory):
    """A fresh PYML_CACHE_DIR for the session: the wheelhouse is really resolved and downloaded once."""
    folder = tmp_path_factory.mktemp("pyml-cache")
    old = os.environ.get("PYML_CACHE_DIR")
    os.environ["PYML_CACHE_DIR"] = str(folder)
    yield folder
    if old is None:
        os.environ.pop("PYML_CACHE_DIR", None)
    else:
        os.environ["PYML_CACHE_DIR"] = old


@pytest.fixture(scope="session")
def session_package(tmp_path_factory) -> Path:
    """The example scikit-learn package, once per session."""
    return write_example_package(tmp_path_factory.mktemp("example") / "package")


@pytest.fixture(scope="session")
def built(docker_engine, pyml_cache, session_package):
    """The example package built as ``pyml/pytest-<run>:1``: ``(package, ImageInfo, Progress)``."""
    from pyml_jupyter.images.builder import build_image
    from pyml_jupyter.progress import Progress

    progress = Progress("build")
    stages: list[str] = []
    progress.subscribe(lambda p, event, payload: stages.append(payload) if event == "stage" else None)
    info = build_image(session_package, name=model_name(), version=1, run_id="run-1", base_image=BASE_IMAGE,
                       progress=progress, client=docker_engine)
    progress.stages = stages
    return session_package, info, progress


def copy_package(package: Path, destination: Path) -> Path:
    shutil.copytree(package, destination, ignore=shutil.ignore_patterns("__pycache__"))
    return destination


def write_tensor_package(directory: Path, requirements: str) -> Path:
    """A TensorModel package in the documented format: y = x @ w, and the argmax class."""
    import numpy as np

    directory.mkdir(parents=True)
    (directory / "artifacts").mkdir()
    np.save(directory / "artifacts" / "w.npy", np.array([[0.5, -1.0], [0.25, 2.0], [1.5, 0.125]]))
    (directory / "model.py").write_text(textwrap.dedent('''
        import numpy as np
        from pyml_jupyter.serving.contract import TensorModel


        class Linear(TensorModel):
            def __init__(self, artifacts):
                self.w = artifacts["w"]

            def predict(self, tensors):
                y = tensors["x"] @ self.w
                return {"y": y, "cls": np.argmax(y, axis=1).astype(np.int64)}
    '''))
    (directory / "sample.json").write_text(json.dumps({"x": [[1.0, 2.0, 3.0], [0.1, -0.2, 0.3], [5.0, 0.0, -1.0]]}))
    (directory / "requirements.txt").write_text(requirements)
    contract = {
        "format_version": 1, "kind": "tensor", "class_name": "Linear",
        "python_version": ".".join(map(str, sys.version_info[:3])),
        "input_schema": {"type": "tensor", "tensors": [{"name": "x", "dtype": "float64", "shape": [None, 3]}]},
        "output_schema": {"type": "tensor", "tensors": [{"name": "y", "dtype": "float64", "shape": [None, 2]},
                                                        {"name": "cls", "dtype": "int64", "shape": [None]}]},
        "artifacts": {"w": {"path": "w.npy", "format": "numpy"}},
        "takes_artifacts": True, "metadata": {},
    }
    (directory / "pyml.json").write_text(json.dumps(contract, indent=2))
    return directory
