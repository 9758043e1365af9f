"""Artifacts: each trained object saved with the tool that suits it, and loaded back as an equal object."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from conftest import require_torch
from pyml_jupyter.serving.artifacts import (
    FORMATS,
    ArtifactError,
    load_artifact,
    load_artifacts,
    save_artifact,
)

ARTIFACTS_PY = Path(__file__).resolve().parents[1] / "pyml_jupyter" / "serving" / "artifacts.py"


class HandRolledModel:
    """Not scikit-learn, but shaped like an estimator: fit and predict."""

    def __init__(self, weight: float = 1.0) -> None:
        self.weight = weight

    def fit(self, X, y):
        return self

    def predict(self, X):
        return np.asarray(X) * self.weight


def fitted_pipeline():
    X = np.random.default_rng(0).normal(size=(30, 2))
    return make_pipeline(StandardScaler(), LogisticRegression()).fit(X, X[:, 0] > 0)


# -- choosing the format -----------------------------------------------------------------------------------------


def test_numpy_array_is_saved_as_npy(tmp_path):
    spec = save_artifact(np.arange(6.0).reshape(2, 3), tmp_path, "weights")

    assert spec["format"] == "numpy"
    assert spec["path"] == "weights.npy"
    assert (tmp_path / "weights.npy").is_file()


def test_array_of_python_objects_is_saved_with_joblib(tmp_path):
    # np.save(allow_pickle=False) cannot write it, and loading must never need allow_pickle=True.
    assert save_artifact(np.array([{"a": 1}, None], dtype=object), tmp_path, "lookup")["format"] == "joblib"


def test_scikit_learn_estimator_is_saved_with_joblib(tmp_path):
    spec = save_artifact(fitted_pipeline(), tmp_path, "clf")

    assert spec["format"] == "joblib"
    assert spec["path"] == "clf.joblib"


def test_estimator_shaped_object_from_another_library_is_saved_with_joblib(tmp_path):
    assert save_artifact(HandRolledModel(), tmp_path, "model")["format"] == "joblib"


def test_pandas_objects_are_saved_with_joblib(tmp_path):
    assert save_artifact(pd.DataFrame({"x": [1, 2]}), tmp_path, "frame")["format"] == "joblib"
    assert save_artifact(pd.Series([1.0, 2.0]), tmp_path, "series")["format"] == "joblib"


def test_other_python_objects_are_saved_with_pickle(tmp_path):
    spec = save_artifact({"paris": 1, "lyon": 2}, tmp_path, "city_codes")

    assert spec["format"] == "pickle"
    assert spec["path"] == "city_codes.pkl"


def test_torch_module_and_tensor_are_saved_with_torch(tmp_path):
    torch = require_torch()
    net = torch.nn.Linear(2, 1)

    module_spec = save_artifact(net, tmp_path, "net")
    tensor_spec = save_artifact(torch.ones(3), tmp_path, "bias")

    assert module_spec["format"] == tensor_spec["format"] == "torch"
    assert module_spec["path"] == "net.pt"
    assert "torch" in module_spec["modules"]
    reloaded = load_artifact(tmp_path, module_spec)
    assert torch.equal(reloaded.weight, net.weight)
    assert torch.equal(load_artifact(tmp_path, tensor_spec), torch.ones(3))


def test_every_format_is_declared():
    assert FORMATS == ("joblib", "numpy", "torch", "pickle")


# -- the spec ------------------------------------------------------------------------------------------------------


def test_spec_names_the_type_of_the_object(tmp_path):
    spec = save_artifact(StandardScaler(), tmp_path, "scaler")

    assert spec["type"] == "sklearn.preprocessing._data.StandardScaler"


def test_save_returns_the_modules_needed_to_load_the_artifact(tmp_path):
    spec = save_artifact(fitted_pipeline(), tmp_path, "clf")

    assert {"sklearn", "numpy", "joblib"} <= set(spec["modules"])
    assert spec["modules"] == sorted(spec["modules"])


def test_modules_of_a_plain_dict_need_no_library(tmp_path):
    assert save_artifact({"a": (1, 2.0, "x")}, tmp_path, "table")["modules"] == []


def test_modules_include_the_classes_held_inside_a_container(tmp_path):
    spec = save_artifact({"frame": pd.DataFrame({"x": [1]}), "scaler": StandardScaler()}, tmp_path, "bundle")

    assert spec["format"] == "pickle"
    assert {"pandas", "sklearn"} <= set(spec["modules"])


# -- round trips ---------------------------------------------------------------------------------------------------


def test_numpy_array_round_trips_exactly(tmp_path):
    array = np.random.default_rng(1).normal(size=(4, 3)).astype(np.float32)

    back = load_artifact(tmp_path, save_artifact(array, tmp_path, "a"))

    assert back.dtype == np.float32
    np.testing.assert_array_equal(back, array)


def test_estimator_round_trips_with_the_same_predictions(tmp_path):
    pipeline = fitted_pipeline()
    X = np.random.default_rng(2).normal(size=(5, 2))

    back = load_artifact(tmp_path, save_artifact(pipeline, tmp_path, "clf"))

    np.testing.assert_array_equal(back.predict_proba(X), pipeline.predict_proba(X))


def test_dataframe_round_trips_with_its_dtypes(tmp_path):
    frame = pd.DataFrame({"x": [1, 2], "city": pd.array(["a", None], dtype="string")})

    back = load_artifact(tmp_path, save_artifact(frame, tmp_path, "frame"))

    pd.testing.assert_frame_equal(back, frame)


def test_plain_object_round_trips(tmp_path):
    value = {"codes": {"paris": 1}, "edges": (0.5, 1.5), "names": ["a"]}

    assert load_artifact(tmp_path, save_artifact(value, tmp_path, "table")) == value


def test_load_artifacts_loads_each_by_name(tmp_path):
    specs = {
        "weights": save_artifact(np.ones(2), tmp_path, "weights"),
        "codes": save_artifact({"a": 1}, tmp_path, "codes"),
    }

    loaded = load_artifacts(tmp_path, specs)

    assert set(loaded) == {"weights", "codes"}
    assert loaded["codes"] == {"a": 1}


def test_spec_with_only_path_and_format_loads(tmp_path):
    save_artifact(StandardScaler(), tmp_path, "scaler")

    assert isinstance(load_artifact(tmp_path, {"path": "scaler.joblib", "format": "joblib"}), StandardScaler)


# -- what cannot be saved ------------------------------------------------------------------------------------------


def test_lambda_cannot_be_saved_and_the_error_names_the_artifact(tmp_path):
    with pytest.raises(ValueError, match="artifact 'transform'.*cannot be saved"):
        save_artifact(lambda x: x + 1, tmp_path, "transform")


def test_lock_cannot_be_saved_and_the_error_says_why(tmp_path):
    with pytest.raises(ArtifactError, match="artifact 'guard'.*lock"):
        save_artifact(threading.Lock(), tmp_path, "guard")


def test_generator_cannot_be_saved(tmp_path):
    with pytest.raises(ArtifactError, match="artifact 'rows'.*generator"):
        save_artifact((i for i in range(3)), tmp_path, "rows")


def test_open_file_inside_a_container_cannot_be_saved(tmp_path):
    with open(tmp_path / "log.txt", "w") as handle:
        with pytest.raises(ArtifactError, match="artifact 'state'"):
            save_artifact({"log": handle}, tmp_path / "artifacts", "state")


def test_an_artifact_that_cannot_be_saved_leaves_no_file_behind(tmp_path):
    with pytest.raises(ArtifactError):
        save_artifact([1, threading.Lock()], tmp_path, "broken")

    assert [p.name for p in tmp_path.iterdir()] == []


@pytest.mark.parametrize("name", ["", "2fast", "my-model", "my model", "../escape", "clf.joblib", None])
def test_artifact_name_must_be_an_identifier(tmp_path, name):
    with pytest.raises(ArtifactError, match="not valid"):
        save_artifact(1, tmp_path, name)


# -- loading -------------------------------------------------------------------------------------------------------


def test_missing_artifact_file_is_an_error_naming_the_artifact(tmp_path):
    with pytest.raises(ArtifactError, match="artifact 'clf'.*does not exist"):
        load_artifacts(tmp_path, {"clf": {"path": "clf.joblib", "format": "joblib"}})


def test_artifact_path_outside_the_artifacts_folder_is_refused(tmp_path):
    with pytest.raises(ArtifactError, match="file name inside the artifacts folder"):
        load_artifact(tmp_path, {"path": "../secrets.pkl", "format": "pickle"})


def test_unknown_format_is_refused(tmp_path):
    with pytest.raises(ArtifactError, match="unknown artifact format"):
        load_artifact(tmp_path, {"path": "x.bin", "format": "cloudpickle"})


def test_artifacts_module_imports_only_the_standard_library():
    # Part of the serving runtime: loaded on its own, it must not pull numpy, joblib or torch in.
    script = (
        "import importlib.util, sys\n"
        f"spec = importlib.util.spec_from_file_location('artifacts', {str(ARTIFACTS_PY)!r})\n"
        "module = importlib.util.module_from_spec(spec); spec.loader.exec_module(module)\n"
        "print(sorted(m for m in ('numpy', 'joblib', 'torch', 'pandas', 'sklearn') if m in sys.modules))\n"
    )

    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)

    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
