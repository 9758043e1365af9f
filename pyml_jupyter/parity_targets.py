"""Every target a registered version predicts on: this process, a fresh process, the container over HTTP and
gRPC, and Spark. :func:`run_targets` predicts one sample on each and returns what each answered (or why it
could not run); :class:`~pyml_jupyter.parity_table.ParityTable` lines the answers up against this process's.

The fresh process and the Spark job are child processes (Spark's session lives as long as its process), started
first so they work while the container answers. A target that cannot run here (no Docker engine, no Java,
no ``tritonclient``, a tensor model on Spark) is *skipped* with the reason; one that runs and breaks *failed*.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

from .errors import ModelFailed, PymlError
from .progress import Progress
from .serving.loader import LoadedModel

__all__ = ["TARGETS", "LABELS", "TargetRun", "Skipped", "run_targets", "predict_here"]

TARGETS = ("notebook", "fresh_process", "http", "grpc", "spark")
"""The targets, in the order the table shows them."""
LABELS = {"notebook": "notebook", "fresh_process": "fresh process", "http": "container (HTTP)",
          "grpc": "container (gRPC)", "spark": "Spark"}
FRESH_TIMEOUT, SPARK_TIMEOUT = 300.0, 600.0


class Skipped(Exception):
    """The target cannot run on this machine; the message says why (and how to enable it)."""


@dataclass
class TargetRun:
    """What one target answered: its prediction and timings, or why it was skipped or failed."""

    key: str
    status: str = "ran"  # ran | skipped | failed
    prediction: Any = None
    reason: str = ""
    latency: dict[str, Any] = field(default_factory=dict)  # "predict_ms" (+ "load_ms", "server": {...})

    @property
    def label(self) -> str:
        return LABELS[self.key]


def _ms(seconds: float) -> float:
    return seconds * 1e3


def predict_here(loaded: LoadedModel, sample: Any, ref: str) -> TargetRun:
    """The reference: ``sample`` predicted in this process; the model's own exception is a :class:`ModelFailed`."""
    t0 = time.perf_counter()
    try:
        prediction = loaded.predict(sample)
    except Exception as exc:  # noqa: BLE001 - the model's fault, reported as such
        raise ModelFailed(f"{ref} raised {type(exc).__name__} on the sample in this process: {exc}. Fix the "
                          "model (or the sample) and register a new version; nothing else was run.") from exc
    if prediction is None:
        raise ModelFailed(f"{ref} returned None on the sample: predict() must return a DataFrame or a dict of "
                          "arrays.")
    return TargetRun("notebook", prediction=prediction, latency={"predict_ms": _ms(time.perf_counter() - t0)})


# ------------------------------------------------------------------------------------------ child processes


def _start_child(package: Path, sample: Any, module: str, timeout: float):
    from .checks.fresh_process import FreshProcess

    return FreshProcess(package, timeout, sample=sample, module=module)


def _spark_unavailable(kind: str) -> str | None:
    if kind != "dataframe":
        return "Spark scores DataFrame models; this is a tensor model"
    try:
        import pyspark  # noqa: F401
    except ImportError:
        return "pyspark is not installed: pip install 'pyml_jupyter[spark]'"
    if not shutil.which("java") and not _java_home():
        return "no Java runtime (java on PATH or JAVA_HOME): install Java 17+ to score on Spark"
    return None


def _java_home() -> bool:
    import os

    home = os.environ.get("JAVA_HOME")
    return bool(home) and (Path(home) / "bin" / "java").is_file()


def _collect(key: str, child) -> TargetRun:
    try:
        prediction, _ = child.result()
    except RuntimeError as exc:
        return TargetRun(key, "failed", reason=str(exc).strip().splitlines()[-1] if str(exc).strip() else "failed")
    timings = child.timings
    return TargetRun(key, prediction=prediction, latency={"predict_ms": _ms(timings.get("predict_s", 0.0)),
                                                           "load_ms": _ms(timings.get("load_s", 0.0))})


# ------------------------------------------------------------------------------------------------ container


def _http(dep: Any, sample: Any) -> TargetRun:
    try:
        prediction = dep.predict(sample, timing=True)
    except PymlError as exc:
        return TargetRun("http", "failed", reason=exc.message)
    timing = dict(dep.last_timing)
    latency: dict[str, Any] = {"predict_ms": timing.pop("round_trip_ms", 0.0)}
    if timing:
        latency["server"] = timing
    if isinstance(prediction, pd.DataFrame):
        prediction.attrs.pop("pyml_timing", None)
    return TargetRun("http", prediction=prediction, latency=latency)


def _grpc_tensor(name: str, values: Any) -> tuple[np.ndarray, str]:
    """A sample column (or tensor) as a numpy array and its V2 datatype; :class:`Skipped` when gRPC cannot carry it."""
    from .serving.scoring import v2_datatype

    if isinstance(values, pd.Series):
        if pd.api.types.is_datetime64_any_dtype(values.dtype):
            values = values.map(lambda v: None if pd.isna(v) else v.isoformat())
        datatype = v2_datatype(values.dtype)
        if datatype != "BYTES":
            if values.isna().any():
                raise Skipped(f"column '{name}' has missing values, which a {datatype} tensor cannot carry")
            return values.to_numpy(dtype=getattr(values.dtype, "numpy_dtype", values.dtype)), datatype
        values = values.to_numpy(dtype=object)
    arr = np.asarray(values)
    datatype = v2_datatype(arr.dtype)
    if datatype == "BYTES":
        if any(v is None or (isinstance(v, float) and v != v) for v in arr.reshape(-1)):
            raise Skipped(f"'{name}' has missing values, which a BYTES tensor cannot carry")
        arr = np.array([v if isinstance(v, bytes) else str(v).encode() for v in arr.reshape(-1)],
                       dtype=object).reshape(arr.shape)
    return arr, datatype


def _grpc(dep: Any, loaded: LoadedModel, sample: Any) -> TargetRun:
    try:
        import tritonclient.grpc as triton
        from tritonclient.utils import InferenceServerException
    except ImportError:
        return TargetRun("grpc", "skipped", reason="tritonclient is not installed: pip install 'tritonclient[grpc]'")
    if not getattr(dep, "grpc_target", ""):
        return TargetRun("grpc", "skipped", reason="the container publishes no gRPC port: rebuild and redeploy it")
    from .serving.schema import dataframe_from_json, tensors_from_json

    columns = {str(c): sample[c] for c in sample.columns} if loaded.kind == "dataframe" else dict(sample)
    inputs = []
    try:
        for name, values in columns.items():
            arr, datatype = _grpc_tensor(name, values)
            tensor = triton.InferInput(name, list(arr.shape), datatype)
            tensor.set_data_from_numpy(arr)
            inputs.append(tensor)
    except Skipped as exc:
        return TargetRun("grpc", "skipped", reason=str(exc))
    client = triton.InferenceServerClient(dep.grpc_target)
    try:
        t0 = time.perf_counter()
        result = client.infer(dep.name, inputs, model_version=str(dep.version))
        elapsed = time.perf_counter() - t0
    except InferenceServerException as exc:
        return TargetRun("grpc", "failed", reason=f"{exc.status() or 'error'}: {exc.message()}")
    finally:
        client.close()
    outputs = {}
    for out in result.get_response().outputs:
        arr = result.as_numpy(out.name)
        if out.datatype == "BYTES":
            arr = np.array([v.decode("utf-8") if isinstance(v, bytes) else v for v in arr.reshape(-1)],
                           dtype=object).reshape(arr.shape)
        outputs[out.name] = arr
    schema = loaded.info.output_schema
    if loaded.kind == "dataframe":
        prediction = dataframe_from_json({k: v.reshape(-1).tolist() for k, v in outputs.items()}, schema)
        prediction.index = sample.index
    else:
        prediction = tensors_from_json(outputs, schema)
    return TargetRun("grpc", prediction=prediction, latency={"predict_ms": _ms(elapsed)})


def _container(deployment: Callable[[], Any], loaded: LoadedModel, sample: Any) -> list[TargetRun]:
    from .errors import DeployError
    from .images.builder import docker_client

    try:
        docker_client(error=DeployError)
    except PymlError as exc:
        return [TargetRun(key, "skipped", reason=exc.message) for key in ("http", "grpc")]
    try:
        dep = deployment()
    except PymlError as exc:
        return [TargetRun(key, "failed", reason=exc.message) for key in ("http", "grpc")]
    return [_http(dep, sample), _grpc(dep, loaded, sample)]


# ------------------------------------------------------------------------------------------------------ all


def run_targets(package: Path, loaded: LoadedModel, sample: Any, *, ref: str, deployment: Callable[[], Any],
                spark: Any = None, progress: Progress | None = None) -> list[TargetRun]:
    """``sample`` (schema enforced) predicted on every target, in :data:`TARGETS` order.

    ``deployment()`` returns the running container (deploying it if needed); ``spark`` is a session to score
    on in this process (default: a short-lived one in a child process).
    """
    progress = progress or Progress(f"test {ref}")
    progress.set_stage("predicting in this process", 0.0)
    here = predict_here(loaded, sample, ref)
    fresh = _start_child(package, sample, "pyml_jupyter.serving.offline", FRESH_TIMEOUT)
    spark_reason = _spark_unavailable(loaded.kind)
    spark_child = None
    if spark_reason is None and spark is None:
        spark_child = _start_child(package, sample, "pyml_jupyter.batch.frame_process", SPARK_TIMEOUT)
    try:
        progress.set_stage("predicting in the container (HTTP, gRPC)", 0.2)
        http, grpc = _container(deployment, loaded, sample)
        progress.log(f"container: HTTP {http.status}, gRPC {grpc.status}")
        progress.set_stage("predicting in a fresh process", 0.5)
        fresh_run = _collect("fresh_process", fresh)
        progress.set_stage("predicting on Spark", 0.7)
        if spark_reason is not None:
            spark_run = TargetRun("spark", "skipped", reason=spark_reason)
        elif spark_child is not None:
            spark_run = _collect("spark", spark_child)
        else:
            spark_run = _in_session(package, sample, spark)
    finally:
        fresh.close()
        if spark_child is not None:
            spark_child.close()
    progress.set_stage("comparing", 0.95)
    return [here, fresh_run, http, grpc, spark_run]


def _in_session(package: Path, sample: Any, spark: Any) -> TargetRun:
    from .batch import predict_frame

    t0 = time.perf_counter()
    try:
        prediction = predict_frame(package, sample, spark=spark)
    except PymlError as exc:
        return TargetRun("spark", "failed", reason=exc.message)
    return TargetRun("spark", prediction=prediction, latency={"predict_ms": _ms(time.perf_counter() - t0)})
