"""Shipping a model package to Spark executors, and the scorer ``mapInPandas`` runs there.

The same model package the notebook checked, MLflow logged and the container serves is shipped to the
executors with Spark's own means (``SparkContext.addArchive``), together with the serving runtime
(``pyml_jupyter/serving``), so executors need neither pyml_jupyter nor MLflow: only the model's own requirements.
On every executor Python process the package is loaded once (:func:`~pyml_jupyter.serving.loader.load_package`)
and rows are scored in Arrow batches through :meth:`LoadedModel.predict`, which enforces the input schema with
the one schema module before the model's code runs. A TensorModel's rows become named arrays before the model
runs and its predictions rows again (:func:`~pyml_jupyter.serving.schema.tensors_from_rows` and
:func:`~pyml_jupyter.serving.schema.tensors_to_rows`); everything between is the same scorer.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import uuid
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator

import pandas as pd

from ..serving.loader import package_digest

if TYPE_CHECKING:  # pragma: no cover
    from pyspark.sql import SparkSession

_CACHE_MODULE = "_pyml_batch_models"  # per executor Python process: archive name -> LoadedModel

# The stub ``pyml_jupyter/__init__.py`` shipped beside the runtime: it lets an executor without pyml_jupyter
# import ``pyml_jupyter.serving`` (and, where pyml_jupyter is installed, still find its other modules).
_RUNTIME_INIT = (
    '"""pyml_jupyter\'s serving runtime, shipped to Spark executors by pyml_jupyter.batch."""\n'
    "__path__ = __import__('pkgutil').extend_path(__path__, __name__)\n"
)


def _runtime_dir() -> Path:
    from .. import serving

    return Path(serving.__file__).resolve().parent


def _runtime_files() -> list[Path]:
    root = _runtime_dir()
    return sorted(p for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts
                  and p.suffix not in (".pyc", ".pyo"))


def package_archive(package_dir: Path) -> Path:
    """A zip of ``package/`` (the model package) and ``runtime/pyml_jupyter/serving`` (the serving runtime),
    named by the digest of both, so a changed package or runtime is never confused with an earlier one."""
    h = hashlib.sha256(package_digest(package_dir).encode())
    runtime = _runtime_dir()
    for f in _runtime_files():
        h.update(f.relative_to(runtime).as_posix().encode() + b"\0" + f.read_bytes())
    h.update(_RUNTIME_INIT.encode())
    path = Path(tempfile.gettempdir()) / "pyml-batch" / f"pyml-{h.hexdigest()[:20]}.zip"
    if path.is_file():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(f".{uuid.uuid4().hex[:8]}.part")
    with zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED) as z:
        for f in sorted(p for p in package_dir.rglob("*") if p.is_file() and "__pycache__" not in p.parts):
            z.write(f, "package/" + f.relative_to(package_dir).as_posix())
        z.writestr("runtime/pyml_jupyter/__init__.py", _RUNTIME_INIT)
        for f in _runtime_files():
            z.write(f, "runtime/pyml_jupyter/serving/" + f.relative_to(runtime).as_posix())
    os.replace(partial, path)
    return path


def ship(spark: "SparkSession", package_dir: Path) -> str:
    """Add the package archive to the Spark context (once); executors find it as ``SparkFiles.get(name)``."""
    archive = package_archive(package_dir)
    sc = spark.sparkContext
    if not any(a.rstrip("/").endswith("/" + archive.name) for a in sc.listArchives):
        sc.addArchive(str(archive))
    return archive.name


def make_scorer(archive: str, keep: list[str], row_id: str | None) -> Callable[[Iterator[pd.DataFrame]],
                                                                                Iterator[pd.DataFrame]]:
    """The function ``mapInPandas`` runs on executors.

    It is a closure on purpose: cloudpickle ships it by value, so an executor needs neither pyml_jupyter nor
    this module, only the archive (which carries the serving runtime). The loaded model is cached in a module
    registered in ``sys.modules``, which lives as long as the (reused) Python worker process.
    """

    def score(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        import decimal as _decimal
        import os as _os
        import sys as _sys
        import types as _types

        import pandas as _pd
        from pyspark import SparkFiles

        cache = _sys.modules.get(_CACHE_MODULE)
        if cache is None:
            cache = _types.ModuleType(_CACHE_MODULE)
            cache.models = {}
            _sys.modules[_CACHE_MODULE] = cache
        model = cache.models.get(archive)
        if model is None:
            root = SparkFiles.get(archive)
            runtime = _os.path.join(root, "runtime")
            if runtime not in _sys.path:
                _sys.path.insert(0, runtime)  # the driver's runtime: the same schema code that checked the query
            from pyml_jupyter.serving.loader import load_package

            model = load_package(_os.path.join(root, "package"))
            cache.models = {archive: model}  # one model per process: a new package replaces the previous one
        from pyml_jupyter.serving.schema import SchemaError as _SchemaError
        from pyml_jupyter.serving.schema import tensors_from_rows, tensors_to_rows

        input_schema, output_schema = model.info.input_schema, model.info.output_schema
        tensors = model.info.kind == "tensor"  # named arrays in and out: converted from and to rows at the edges
        as_decimal = [] if tensors else [c.name for c in output_schema.columns if c.dtype == "uint64"]
        for pdf in batches:
            if not len(pdf):
                continue
            prediction = model.predict(tensors_from_rows(pdf, input_schema) if tensors else pdf)
            try:
                out = output_schema.enforce(prediction).data
            except _SchemaError as exc:
                raise _SchemaError(exc.problems,
                                   summary="The model's output does not match its output schema") from None
            out = tensors_to_rows(out, output_schema) if tensors else out
            if len(out) != len(pdf):
                raise ValueError(f"the model returned {len(out)} rows for {len(pdf)} input rows; predict() must "
                                 f"return one row per input row")
            out = out.reset_index(drop=True)
            for name in as_decimal:  # DECIMAL(20,0) in Spark: Arrow wants Decimal objects
                out[name] = _pd.Series([None if v is _pd.NA else _decimal.Decimal(int(v)) for v in out[name]],
                                       dtype=object)
            kept = pdf[keep + ([row_id] if row_id else [])].reset_index(drop=True)
            yield _pd.concat([kept, out], axis=1)

    return score
