"""Shared fixtures. Real components only: a real MLflow store, Docker engine, Spark session, browser."""

from __future__ import annotations

import json
import os
import sys
import textwrap
from pathlib import Path

import pytest

# jupyter_server fixtures (jp_fetch, jp_serverapp) for the handler tests; their autouse fixtures apply session-wide.
pytest_plugins = ["pytest_jupyter.jupyter_server"]

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")

# In-process clients name the host "testserver" (Starlette's TestClient) or "test" (httpx): allow them, as a
# deployment allows its own names (serving/access.py). The access tests pass their own policies.
os.environ.setdefault("PYML_ALLOWED_HOSTS", "testserver,test")


def require_torch():
    """The ``torch`` module, or a skip (a failure under CI=true, where scripts/test.sh installs it)."""
    try:
        import torch
    except ImportError as exc:
        if IN_CI:
            pytest.fail(f"CI needs PyTorch (pip install torch==2.13.0): {exc}")
        pytest.skip(f"PyTorch is not installed: {exc}")
    return torch


EXAMPLE_MODEL_SOURCE = textwrap.dedent(
    '''
    # Captured by pyml_jupyter (hand-written test fixture).
    import numpy as np
    import pandas as pd
    from pyml_jupyter.serving.contract import DataFrameModel


    def add_features(df):
        out = df[["x1", "x2"]].copy()
        out["x1x2"] = df["x1"] * df["x2"]
        out["is_paris"] = (df["city"] == "paris").astype(float)
        return out


    class ExampleModel(DataFrameModel):
        def __init__(self, artifacts):
            self.clf = artifacts["clf"]

        def predict(self, df):
            proba = self.clf.predict_proba(add_features(df).to_numpy())[:, 1]
            return pd.DataFrame({"score": proba, "label": (proba > 0.5).astype(np.int64)}, index=df.index)
    '''
)


def example_frame(n: int = 8, seed: int = 0):
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "x1": rng.normal(size=n),
            "x2": rng.normal(size=n),
            "city": rng.choice(["paris", "lyon", "nice"], size=n).astype(object),
        }
    )


def write_example_package(directory: Path, n_sample: int = 5) -> Path:
    """A model package written by hand in the documented format (independent of capture)."""
    import joblib
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    directory.mkdir(parents=True, exist_ok=True)
    train = example_frame(200, seed=1)
    feats = train[["x1", "x2"]].copy()
    feats["x1x2"] = train["x1"] * train["x2"]
    feats["is_paris"] = (train["city"] == "paris").astype(float)
    y = (train["x1"] + 0.5 * train["x2"] > 0).astype(int)
    clf = LogisticRegression().fit(feats.to_numpy(), y)
    (directory / "artifacts").mkdir(exist_ok=True)
    joblib.dump(clf, directory / "artifacts" / "clf.joblib")
    (directory / "model.py").write_text(EXAMPLE_MODEL_SOURCE)
    sample = example_frame(n_sample, seed=2)
    (directory / "sample.json").write_text(
        json.dumps({"columns": list(sample.columns), "data": sample.astype(object).values.tolist()})
    )
    import sklearn

    (directory / "requirements.txt").write_text(
        f"numpy=={np.__version__}\npandas=={__import__('pandas').__version__}\n"
        f"scikit-learn=={sklearn.__version__}\njoblib=={joblib.__version__}\n"
    )
    contract = {
        "format_version": 1,
        "kind": "dataframe",
        "class_name": "ExampleModel",
        "python_version": ".".join(map(str, sys.version_info[:3])),
        "input_schema": {
            "type": "dataframe",
            "columns": [
                {"name": "x1", "dtype": "float64", "nullable": False},
                {"name": "x2", "dtype": "float64", "nullable": False},
                {"name": "city", "dtype": "string", "nullable": False},
            ],
        },
        "output_schema": {
            "type": "dataframe",
            "columns": [
                {"name": "score", "dtype": "float64", "nullable": False},
                {"name": "label", "dtype": "int64", "nullable": False},
            ],
        },
        "artifacts": {"clf": {"path": "clf.joblib", "format": "joblib"}},
        "takes_artifacts": True,
        "metadata": {},
    }
    (directory / "pyml.json").write_text(json.dumps(contract, indent=2))
    return directory


@pytest.fixture
def example_package(tmp_path: Path) -> Path:
    """A small scikit-learn DataFrameModel package on disk (columns x1, x2: float64; city: string)."""
    return write_example_package(tmp_path / "package")


# --------------------------------------------------------------------- no dangling images left behind


def _dangling_pyml_images() -> set[str] | None:
    """Ids of the untagged images that pyml builds made (they carry ``pyml.stage``); None without an engine."""
    try:
        import docker

        client = docker.from_env(timeout=20)
        client.ping()
        images = client.images.list(filters={"dangling": True, "label": "pyml.stage"})
    except Exception:  # noqa: BLE001 - no engine: nothing to compare
        return None
    return {image.id for image in images}


def pytest_sessionstart(session):
    session.config.stash[_DANGLING] = _dangling_pyml_images()


def pytest_sessionfinish(session, exitstatus):
    """The session fails when it left untagged (dangling) pyml images on the engine: builds must not."""
    import time

    before = session.config.stash.get(_DANGLING, None)
    if before is None:
        return
    deadline = time.monotonic() + 30  # a build still running elsewhere names its stages when it ends
    while (left := (_dangling_pyml_images() or set()) - before) and time.monotonic() < deadline:
        time.sleep(3)
    if left:
        sys.stderr.write(f"\nFAILED: the tests left {len(left)} untagged pyml image(s) on the Docker engine: "
                         f"{', '.join(sorted(i[7:19] for i in left))} (docker image inspect ID)\n")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


_DANGLING = pytest.StashKey[set]()
