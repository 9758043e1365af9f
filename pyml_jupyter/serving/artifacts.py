"""Artifacts: the trained objects a model receives through its constructor, one file each.

Each artifact is saved with the tool that suits it and described by a spec stored in the package contract::

    {"path": "clf.joblib", "format": "joblib", "type": "sklearn.linear_model._logistic.LogisticRegression",
     "modules": ["joblib", "numpy", "sklearn"]}

* ``torch``: ``torch.nn.Module`` and ``torch.Tensor`` objects -> ``NAME.pt``, ``torch.save`` / ``torch.load``
  (mapped to the CPU when the serving machine has no CUDA);
* ``numpy``: plain ``numpy.ndarray`` holding no Python objects -> ``NAME.npy``, ``numpy.save`` /
  ``numpy.load(allow_pickle=False)``;
* ``joblib``: scikit-learn-like estimators (``get_params``, or ``fit`` and ``predict``, or a class from
  sklearn, xgboost, lightgbm...), pandas objects, other numpy arrays -> ``NAME.joblib``, ``joblib.dump`` /
  ``joblib.load``;
* ``pickle``: everything else -> ``NAME.pkl``, pickle protocol 5.

``modules`` lists the top-level modules needed to load the file: the loader's own (``joblib``, ``numpy``,
``torch``) and every module the object's pickle refers to, recorded while pickling: a recording pass pickles the
object into a sink that discards the bytes (array buffers are passed out of band, so not even copied), and
notes the module of every class, function and object the pickler meets (for torch objects, the modules of
their classes and of their submodules' classes: pickling a network just to list them would copy its weights).
A module ``__main__`` in that list
means the pickle refers to a class or function defined in the notebook, which the serving process cannot find.

This module is part of the serving runtime: it imports only the standard library at module level; numpy,
joblib and torch are imported when a file of their format is saved or loaded.
"""

from __future__ import annotations

import os
import pickle
import re
import sys
import tempfile
from pathlib import Path
from typing import Any, Mapping

__all__ = ["FORMATS", "ArtifactError", "save_artifact", "load_artifact", "load_artifacts"]

FORMATS = ("joblib", "numpy", "torch", "pickle")

_EXTENSIONS = {"joblib": ".joblib", "numpy": ".npy", "torch": ".pt", "pickle": ".pkl"}
_LOADER_MODULES = {"joblib": "joblib", "numpy": "numpy", "torch": "torch", "pickle": None}
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
#: Libraries whose objects are estimators even when they do not look like one.
_ESTIMATOR_LIBRARIES = frozenset({"sklearn", "xgboost", "lightgbm", "catboost", "imblearn", "statsmodels"})
#: Protocol 5 (Python >= 3.8): out-of-band buffers, and every Python the runtime supports reads it.
PICKLE_PROTOCOL = min(pickle.HIGHEST_PROTOCOL, 5)


class ArtifactError(ValueError):
    """An artifact that cannot be saved or loaded; the message names it and says why."""


def save_artifact(obj: Any, directory: str | os.PathLike, name: str) -> dict:
    """Save ``obj`` as ``directory/NAME.<ext>`` in the format that suits it; return its spec.

    The spec is ``{"path": "NAME.ext", "format": ..., "type": "module.QualName", "modules": [...]}``, with
    ``path`` relative to ``directory``. Raises :class:`ArtifactError` (a ``ValueError``) for an invalid name or
    an object that cannot be serialized (a lambda, a generator, an open file, a lock...).
    """
    _check_name(name)
    fmt = _choose_format(obj)
    kind = type(obj)
    type_name = f"{kind.__module__}.{kind.__qualname__}"
    modules = _torch_modules(obj) if fmt == "torch" else _record_modules(obj, name)
    if _LOADER_MODULES[fmt]:
        modules.add(_LOADER_MODULES[fmt])
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    filename = name + _EXTENSIONS[fmt]
    # Write next to the target, then rename: a failed save never leaves a half-written artifact behind.
    handle, temporary = tempfile.mkstemp(prefix=f".{name}.", suffix=_EXTENSIONS[fmt], dir=directory)
    os.close(handle)
    try:
        _WRITERS[fmt](obj, temporary)
        os.replace(temporary, directory / filename)
    except BaseException as exc:
        Path(temporary).unlink(missing_ok=True)
        if isinstance(exc, Exception) and not isinstance(exc, ArtifactError):
            raise ArtifactError(f"artifact {name!r} ({type_name}) could not be saved as {fmt}: {exc}") from exc
        raise
    return {"path": filename, "format": fmt, "type": type_name, "modules": sorted(modules)}


def load_artifact(directory: str | os.PathLike, spec: Mapping[str, Any]) -> Any:
    """Load one artifact described by ``spec`` (needs ``path`` and ``format``) from ``directory``."""
    fmt = spec.get("format")
    relative = spec.get("path")
    if fmt not in FORMATS:
        raise ArtifactError(f"unknown artifact format {fmt!r} in {dict(spec)!r}; expected one of {FORMATS}")
    if not isinstance(relative, str) or not relative or relative != os.path.basename(relative) or relative in (
        ".",
        "..",
    ):
        raise ArtifactError(f"artifact path {relative!r} must be a file name inside the artifacts folder")
    path = Path(directory) / relative
    if not path.is_file():
        raise ArtifactError(f"artifact file {path} does not exist")
    return _READERS[fmt](path)


def load_artifacts(directory: str | os.PathLike, specs: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """Load every artifact: ``{name: object}``. An artifact that fails to load is named in the error."""
    loaded = {}
    for name, spec in specs.items():
        try:
            loaded[name] = load_artifact(directory, spec)
        except ArtifactError as exc:
            raise ArtifactError(f"artifact {name!r}: {exc}") from exc
        except Exception as exc:
            raise ArtifactError(
                f"artifact {name!r} ({spec.get('path')}, {spec.get('format')}) could not be loaded: "
                f"{type(exc).__name__}: {exc}"
            ) from exc
    return loaded


# --------------------------------------------------------------------------------------------------------------
# Choosing the format


def _check_name(name: Any) -> None:
    if not isinstance(name, str) or not _NAME.match(name):
        raise ArtifactError(
            f"artifact name {name!r} is not valid: use a Python identifier (letters, digits and underscores, "
            "not starting with a digit), e.g. 'scaler' or 'clf_v2'; the model reads it as artifacts['NAME']."
        )


def _top_module(kind: type) -> str:
    return (getattr(kind, "__module__", None) or "").split(".")[0]


def _is_torch(obj: Any) -> bool:
    """A torch.nn.Module or torch.Tensor (subclasses included), without importing torch for anything else."""
    if not any(_top_module(base) == "torch" for base in type(obj).__mro__):
        return False
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(obj, (torch.nn.Module, torch.Tensor))


def _is_plain_ndarray(obj: Any) -> bool:
    numpy = sys.modules.get("numpy")
    return numpy is not None and type(obj) is numpy.ndarray and not obj.dtype.hasobject


def _has_method(obj: Any, name: str) -> bool:
    try:
        return callable(getattr(obj, name, None))
    except Exception:
        return False


def _is_joblib_kind(obj: Any) -> bool:
    tops = {_top_module(base) for base in type(obj).__mro__}
    if tops & (_ESTIMATOR_LIBRARIES | {"pandas"}):
        return True
    if _has_method(obj, "get_params") or (_has_method(obj, "fit") and _has_method(obj, "predict")):
        return True
    numpy = sys.modules.get("numpy")
    return numpy is not None and isinstance(obj, numpy.ndarray)  # object dtype or a subclass


def _joblib_available() -> bool:
    try:
        import joblib  # noqa: F401
    except ImportError:
        return False
    return True


def _choose_format(obj: Any) -> str:
    if _is_torch(obj):
        return "torch"
    if _is_plain_ndarray(obj):
        return "numpy"
    if _is_joblib_kind(obj) and _joblib_available():
        return "joblib"
    return "pickle"


# --------------------------------------------------------------------------------------------------------------
# Recording the modules a pickle refers to


class _Discard:
    def write(self, data: Any) -> int:
        return len(data) if hasattr(data, "__len__") else 0


class _RecordingPickler(pickle.Pickler):
    """Pickles into nowhere, noting the module of every class, function and object it meets."""

    def __init__(self) -> None:
        # buffer_callback returning False sends buffers out of band: array data is never copied.
        super().__init__(_Discard(), protocol=PICKLE_PROTOCOL, buffer_callback=lambda buffer: False)
        self.modules: set[str] = set()

    def reducer_override(self, obj: Any) -> Any:
        # Called for every object but the exact builtin containers and scalars (which need no module).
        try:
            if isinstance(obj, type) or (callable(obj) and hasattr(obj, "__qualname__")):
                module = getattr(obj, "__module__", None)  # pickled by reference: module.qualname
            else:
                module = type(obj).__module__
        except Exception:  # an object whose attribute lookup misbehaves: its class still tells
            module = type(obj).__module__
        if isinstance(module, str) and module:
            self.modules.add(module.split(".")[0])
        return NotImplemented


def _torch_modules(obj: Any) -> set[str]:
    """Modules of a torch object: the classes of its submodules (pickling it here would copy every weight)."""
    parts = obj.modules() if hasattr(obj, "modules") else [obj]
    return {_top_module(type(part)) for part in parts} | {"torch"}


def _record_modules(obj: Any, name: str) -> set[str]:
    pickler = _RecordingPickler()
    try:
        pickler.dump(obj)
    except RecursionError as exc:
        raise ArtifactError(f"artifact {name!r} is nested too deeply to be saved: {exc}") from exc
    except Exception as exc:
        raise ArtifactError(
            f"artifact {name!r} ({type(obj).__module__}.{type(obj).__qualname__}) cannot be saved: {exc}. "
            "Artifacts must be data or trained objects that pickle can save (estimators, arrays, frames, "
            "dicts...); lambdas, generators, open files, locks and connections cannot be. Pass the data they "
            "hold instead, or rebuild such objects in the model's constructor."
        ) from exc
    return pickler.modules - {"builtins"}


# --------------------------------------------------------------------------------------------------------------
# Writers and readers


def _write_joblib(obj: Any, path: str) -> None:
    import joblib

    joblib.dump(obj, path)


def _write_numpy(obj: Any, path: str) -> None:
    import numpy

    with open(path, "wb") as handle:
        numpy.save(handle, obj, allow_pickle=False)


def _write_torch(obj: Any, path: str) -> None:
    import torch

    torch.save(obj, path)


def _write_pickle(obj: Any, path: str) -> None:
    with open(path, "wb") as handle:
        pickle.dump(obj, handle, protocol=PICKLE_PROTOCOL)


def _read_joblib(path: Path) -> Any:
    import joblib

    return joblib.load(path)


def _read_numpy(path: Path) -> Any:
    import numpy

    return numpy.load(path, allow_pickle=False)


def _read_torch(path: Path) -> Any:
    import torch

    map_location = None if torch.cuda.is_available() else "cpu"
    try:
        # A whole nn.Module is a pickle of its class: it needs weights_only=False (the default since torch 2.6
        # is True). Artifacts come from the package we wrote, not from strangers.
        return torch.load(path, map_location=map_location, weights_only=False)
    except TypeError:  # torch < 1.13 has no weights_only
        return torch.load(path, map_location=map_location)


def _read_pickle(path: Path) -> Any:
    with open(path, "rb") as handle:
        return pickle.load(handle)


_WRITERS = {"joblib": _write_joblib, "numpy": _write_numpy, "torch": _write_torch, "pickle": _write_pickle}
_READERS = {"joblib": _read_joblib, "numpy": _read_numpy, "torch": _read_torch, "pickle": _read_pickle}
