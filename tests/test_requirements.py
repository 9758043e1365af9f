"""Requirements: imported modules -> pinned distributions; modules a pickle refers to, read without loading it."""

from __future__ import annotations

import importlib.metadata
import pickle
import platform
import sys

import joblib
import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from conftest import require_torch
from pyml_jupyter.requirements import Requirements, pickled_modules, resolve_requirements


@pytest.fixture(scope="module")
def estimator():
    X = np.random.default_rng(0).normal(size=(40, 3))
    return make_pipeline(StandardScaler(), LogisticRegression()).fit(X, X[:, 0] > 0)


# -- resolve_requirements -----------------------------------------------------------------------------------------


def test_sklearn_import_is_pinned_as_the_installed_scikit_learn():
    requirements = resolve_requirements(["sklearn"])

    assert requirements.pinned == [f"scikit-learn=={importlib.metadata.version('scikit-learn')}"]


def test_dotted_module_names_resolve_by_their_top_level_package():
    assert resolve_requirements(["sklearn.preprocessing"]).pinned == resolve_requirements(["sklearn"]).pinned


def test_standard_library_modules_are_not_requirements():
    requirements = resolve_requirements(["os", "json", "collections", "math", "__future__"])

    assert requirements.pinned == []
    assert requirements.unresolved == []


def test_module_no_installed_distribution_provides_is_unresolved():
    requirements = resolve_requirements(["numpy", "my_local_utils"])

    assert requirements.unresolved == ["my_local_utils"]
    assert requirements.pinned == [f"numpy=={np.__version__}"]


def test_pyml_jupyter_and_the_notebook_main_module_are_never_requirements():
    requirements = resolve_requirements(["pyml_jupyter", "__main__"])

    assert requirements.pinned == [] and requirements.unresolved == []


def test_extra_distributions_are_always_pinned():
    requirements = resolve_requirements([], extra=["pandas", "numpy"])

    assert requirements.pinned == [
        f"numpy=={importlib.metadata.version('numpy')}",
        f"pandas=={importlib.metadata.version('pandas')}",
    ]


def test_a_distribution_named_twice_is_pinned_once():
    requirements = resolve_requirements(["numpy", "numpy.linalg"], extra=["numpy"])

    assert requirements.pinned == [f"numpy=={np.__version__}"]


def test_extra_distribution_that_is_not_installed_is_unresolved():
    assert resolve_requirements([], extra=["surely-not-installed-dist"]).unresolved == ["surely-not-installed-dist"]


def test_notebook_only_packages_appear_only_when_imported():
    requirements = resolve_requirements(["sklearn", "numpy"], extra=["pandas"])

    names = {line.split("==")[0].lower() for line in requirements.pinned}
    assert not names & {"ipython", "ipykernel", "jupyter", "jupyterlab", "matplotlib", "pyml-jupyter"}


def test_requirements_text_has_a_python_version_header_and_one_pin_per_line():
    text = Requirements(pinned=["numpy==2.0.0", "pandas==2.2.0"], python_version="3.11.7").to_text()

    lines = text.splitlines()
    assert any(line.startswith("#") and "3.11.7" in line for line in lines)
    assert [line for line in lines if not line.startswith("#")] == ["numpy==2.0.0", "pandas==2.2.0"]


def test_python_version_is_the_running_interpreters():
    assert resolve_requirements([]).python_version == platform.python_version()


# -- pickled_modules ----------------------------------------------------------------------------------------------


def test_pickle_of_an_estimator_refers_to_sklearn_and_numpy(tmp_path, estimator):
    path = tmp_path / "model.pkl"
    path.write_bytes(pickle.dumps(estimator, protocol=5))

    assert {"sklearn", "numpy"} <= pickled_modules(path)


@pytest.mark.parametrize("protocol", [0, 2, 4])
def test_older_pickle_protocols_are_read_too(tmp_path, estimator, protocol):
    path = tmp_path / "model.pkl"
    path.write_bytes(pickle.dumps(estimator, protocol=protocol))

    assert {"sklearn", "numpy"} <= pickled_modules(path)


def test_joblib_file_of_an_estimator_refers_to_sklearn_and_numpy(tmp_path, estimator):
    path = tmp_path / "model.joblib"
    joblib.dump(estimator, path)

    assert {"sklearn", "numpy"} <= pickled_modules(path)


def test_joblib_file_reads_past_arrays_of_every_layout(tmp_path):
    # numpy data written inline after each array description; the module after them must still be found.
    arrays = [
        np.arange(7, dtype=np.int8),
        np.ones((3, 5), order="F"),
        np.array(["a", "bcd"]),
        np.zeros(2, dtype=[("a", "i4"), ("b", "f8")]),
        np.array(["2020-01-01"], dtype="datetime64[ns]"),
        np.array([{"k": 1}, None], dtype=object),
        np.zeros((0, 4)),
        np.float64(3.0),
    ]
    path = tmp_path / "arrays.joblib"
    joblib.dump({"arrays": arrays, "last": StandardScaler()}, path)

    assert {"numpy", "sklearn"} <= pickled_modules(path)


@pytest.mark.parametrize("compress", [3, ("gzip", 3), ("bz2", 3), ("xz", 3), ("lzma", 3)])
def test_compressed_joblib_file_is_read(tmp_path, estimator, compress):
    path = tmp_path / "model.joblib"
    joblib.dump(estimator, path, compress=compress)

    assert {"sklearn", "numpy"} <= pickled_modules(path)


def _pickle_calling(module: str, name: str) -> bytes:
    """A protocol-4 pickle of ``module.name()``, written opcode by opcode (STACK_GLOBAL, as Python 3 writes)."""

    def text(value: str) -> bytes:
        return pickle.SHORT_BINUNICODE + bytes([len(value)]) + value.encode()

    call = pickle.STACK_GLOBAL + pickle.EMPTY_TUPLE + pickle.REDUCE
    return pickle.PROTO + b"\x04" + text(module) + text(name) + call + pickle.STOP


def test_module_that_is_not_installed_is_reported_without_importing_it(tmp_path):
    path = tmp_path / "thing.pkl"
    path.write_bytes(_pickle_calling("not_installed_pkg.models", "Thing"))

    assert "not_installed_pkg" in pickled_modules(path)
    assert "not_installed_pkg" not in sys.modules


def test_no_code_from_the_file_runs(tmp_path):
    marker = tmp_path / "ran"
    path = tmp_path / "evil.pkl"
    path.write_bytes(b"cos\nsystem\n(S'touch " + str(marker).encode() + b"'\ntR.")

    assert pickled_modules(path) == {"os"}
    assert not marker.exists()


def test_file_that_is_not_a_pickle_is_rejected(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("these are not the bytes you are looking for")

    with pytest.raises(ValueError, match="notes.txt"):
        pickled_modules(path)


def test_torch_save_file_is_read(tmp_path):
    torch = require_torch()
    path = tmp_path / "net.pt"
    torch.save(torch.nn.Linear(2, 1), path)

    assert "torch" in pickled_modules(path)
