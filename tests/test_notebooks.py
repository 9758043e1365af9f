"""Every example notebook runs, top to bottom, in a real Jupyter kernel.

Each notebook runs in its own empty working directory with a fresh local MLflow store (``MLFLOW_TRACKING_URI``),
exactly as a user would run it with nothing configured. The kernel is the ``python3`` kernel of this
interpreter (jupyter_client starts ``python`` kernelspecs with ``sys.executable``). A failing cell fails the
test with that cell's error.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from registry_fixtures import image_registry  # noqa: F401

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((REPO / "example_notebooks").glob("*.ipynb"))
CELL_TIMEOUT = 900  # seconds; building an image without cached layers is the slowest cell


def test_there_are_example_notebooks():
    assert [p.name for p in NOTEBOOKS][:1] == ["01_register_a_model.ipynb"]


STORE_FILE = "mlflow.db"  # each notebook's own MLflow store, in its tmp_path


@pytest.fixture
def engine_left_clean(tmp_path: Path):
    """Remove the model images and containers a notebook created: those labelled with the notebook's own MLflow
    store (each test gets a fresh one), never another run's on the same engine."""
    yield
    try:
        import docker

        from pyml_jupyter.images.labels import STORE
        from pyml_jupyter.tracking import store_id

        client = docker.from_env()
        mine = {"label": f"{STORE}={store_id(f'sqlite:///{tmp_path / STORE_FILE}')}"}
        containers = client.containers.list(all=True, filters=mine)
        images = client.images.list(filters=mine)
    except Exception:  # noqa: BLE001 - no engine: nothing to clean (the Docker notebook fails on its own)
        return
    for container in containers:
        container.remove(force=True)
    for image in images:
        client.images.remove(image.id, force=True)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_example_notebook_runs(path: Path, tmp_path: Path, monkeypatch, engine_left_clean, request):
    import nbclient
    import nbformat

    if path.name == "04_promote_and_ship.ipynb":  # it pushes to a real registry, started for the test session
        monkeypatch.setenv("PYML_REGISTRY", request.getfixturevalue("image_registry"))

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / STORE_FILE}")
    monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)
    monkeypatch.setenv("PYML_CACHE_DIR", str(tmp_path / "pyml-cache"))
    monkeypatch.delenv("PYTHONSTARTUP", raising=False)
    notebook = nbformat.read(path, as_version=4)
    kernel = python3_kernel_of_this_interpreter()
    client = nbclient.NotebookClient(
        notebook, km=kernel, timeout=CELL_TIMEOUT, startup_timeout=120,
        resources={"metadata": {"path": str(tmp_path)}},
    )

    client.execute()

    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]


def python3_kernel_of_this_interpreter():
    """A manager for the ``python3`` kernel, checked to run this very interpreter (and so this install)."""
    from jupyter_client.manager import KernelManager

    manager = KernelManager(kernel_name="python3")
    command = manager.format_kernel_cmd()
    assert os.path.realpath(command[0]) == os.path.realpath(sys.executable), (
        f"the python3 kernelspec ({manager.kernel_spec.resource_dir}) runs {command[0]}, not {sys.executable}: "
        f"run `{sys.executable} -m ipykernel install --sys-prefix`"
    )
    return manager
