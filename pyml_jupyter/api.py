"""The core API: every face (magics, jupyter_server handlers, widgets, CLI) calls these functions.

A model reference (``ref``) is ``"NAME"`` (the latest version), ``"NAME/VERSION"`` or ``"NAME@ALIAS"``, with an
optional ``models:/`` prefix (see :func:`pyml_jupyter.names.parse_ref`).
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from . import tracking
from ._version import __version__
from .checks import ContractReport, run_check
from .errors import HINT_DEPLOYMENTS, CheckFailed, InvalidInput, InvalidName, ModelFailed, NotFound, PymlError
from .locks import version_lock
from .names import ModelRef, parse_ref
from .parity import ParityReport
from .progress import Progress
from .serving.contract import model_kind
from .serving.loader import CONTRACT_FILE, LoadedModel, load_package
from .serving.schema import SchemaError
from .serving.scoring import ScoringError
from .tracking import ModelVersion, resolve_ref, store_id

if TYPE_CHECKING:
    from .parity_table import ParityTable

__all__ = [
    "check", "register", "is_model_class", "list_models", "RegisteredModel", "ModelVersion", "package_path", "load",
    "build", "deploy", "deployments", "stop", "prune", "test", "predict_offline", "parse_ref", "resolve_ref",
    "ModelRef", "store_id", "config", "promote", "push", "export", "resolve", "TEST_TARGETS", "logs",
]


def _runtime_errors(fn):
    """The serving runtime's errors about data, as :class:`InvalidInput` (422 with the problems list): the
    runtime is a leaf that knows nothing of :class:`PymlError`, so the core maps its errors here, once."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except SchemaError as e:
            raise InvalidInput(str(e), e.problems) from e
        except ScoringError as e:
            if e.status >= 500:
                error = PymlError(e.message, details=e.to_dict())
                error.status = e.status
                raise error from e
            raise InvalidInput(e.message, e.extra.get("problems", ())) from e

    return wrapper


# ----------------------------------------------------------------------------------------------- check, register


def check(model_class: type, sample: Any, artifacts: Mapping[str, Any] | None = None, *,
          namespace: Mapping[str, Any] | None = None) -> ContractReport:
    """Check ``model_class`` against the contract on ``sample`` (see :mod:`pyml_jupyter.checks`)."""
    return run_check(model_class, sample, artifacts, namespace=namespace)


def register(model_class: type, name: str, sample: Any, artifacts: Mapping[str, Any] | None = None, *,
             namespace: Mapping[str, Any] | None = None, experiment: str | None = None) -> ModelVersion:
    """Check, capture and log ``model_class`` to MLflow as a pyfunc model, registered as a new version of ``name``.

    Raises :class:`~pyml_jupyter.errors.CheckFailed` (with the report) and logs nothing when the check fails.
    """
    tracking.check_name_available(name)
    report = run_check(model_class, sample, artifacts, namespace=namespace)
    if not report.ok:
        raise CheckFailed(report.summary() + f"\nNothing was registered under {name!r}.", report)
    registered = tracking.log_and_register(name, report, experiment=experiment)
    registered.report = report
    return registered


# ---------------------------------------------------------------------------------------------------- models


@dataclass
class RegisteredModel:
    """A registered model: its versions and their state (contract, image, deployment), newest first."""

    name: str
    versions: list[dict[str, Any]] = field(default_factory=list)
    description: str = ""

    @property
    def latest_version(self) -> int | None:
        return self.versions[0]["version"] if self.versions else None

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "latest_version": self.latest_version, "description": self.description,
                "versions": self.versions, "mlflow_ui_url": tracking.ui_url(f"#/models/{self.name}")}

    def __repr__(self) -> str:
        lines = [f"{self.name}"]
        for v in self.versions:
            image = v["image"]["tag"] if v.get("image") else "no image"
            dep = f"running at {v['deployment']['url']}" if v.get("deployment") else "not deployed"
            lines.append(f"  v{v['version']}: contract {v['contract_status'] or 'unknown'}, {image}, {dep}")
        return "\n".join(lines)


def _engine_state() -> tuple[dict[tuple[str, str], Any], dict[tuple[str, str], Any]]:
    """Images and running deployments by (store, run id), asked from the Docker engine; empty without one."""
    try:
        from .deployments import list_deployments
        from .images.builder import list_images
    except ImportError:
        return {}, {}
    try:
        images: dict[tuple[str, str], Any] = {}
        for image in list_images():  # newest first: keep the newest image of each version
            images.setdefault((image.store, image.run_id), image)
        deps = {(d.store, d.run_id): d for d in list_deployments()}
    except PymlError:
        return {}, {}
    return images, deps


def list_models() -> list[RegisteredModel]:
    """Every registered model with its versions and their contract, image and deployment state (the image and
    container of that very version: its run in this store)."""
    from .registry import TAG_PUSHED

    images, deps = _engine_state()
    store = tracking.store_id()
    out = []
    for rm, versions in tracking.list_registered():
        model = RegisteredModel(name=rm.name, description=rm.description or "")
        aliases: dict[int, list[str]] = {}
        for alias, number in sorted(tracking.aliases(rm.name).items()):
            aliases.setdefault(number, []).append(alias)
        for mv in versions:
            version = ModelVersion.from_mlflow(mv)
            image, dep = images.get((store, version.run_id)), deps.get((store, version.run_id))
            model.versions.append({
                "version": version.version,
                "run_id": version.run_id,
                "created": mv.creation_timestamp,
                "contract_status": version.contract_status or None,
                "kind": version.tags.get(tracking.TAG_KIND),
                "uri": version.uri,
                "aliases": aliases.get(version.version, []),
                "pushed_image": version.tags.get(TAG_PUSHED),
                "image": {"tag": image.tag, "id": image.image_id, "size_bytes": image.size_bytes} if image else None,
                "deployment": {"url": dep.url, "status": dep.status, "container_id": dep.container_id} if dep else None,
            })
        out.append(model)
    return out


def package_path(ref: str | ModelRef | Path) -> Path:
    """The local folder of a model package: ``ref`` is a package folder or a registered version's reference
    (``NAME[/VERSION]``, ``NAME@ALIAS``, ``models:/...``), whose package is downloaded from MLflow once."""
    if not isinstance(ref, ModelRef) and (Path(ref) / CONTRACT_FILE).is_file():
        return Path(ref)
    resolved = tracking.resolve_ref(ref)
    return tracking.download_package(resolved.name, resolved.version)


def is_model_class(obj: Any) -> bool:
    """True for a model class: a subclass of ``DataFrameModel`` or ``TensorModel``."""
    return model_kind(obj) is not None


def load(ref: str) -> LoadedModel:
    """Load a registered version in this process, exactly as the container and Spark load it."""
    return load_package(package_path(ref))


def config() -> dict[str, Any]:
    """Where models live: the tracking store (its credentials masked) and the MLflow UI link."""
    from .uris import redact

    return {"mlflow_ui_url": tracking.ui_url(), "tracking_uri": redact(tracking.tracking_uri()),
            "version": __version__}


# ------------------------------------------------------------------------------------------- images, deployments


def resolve(ref: str | ModelRef) -> str:
    """``NAME/VERSION`` of the version a ref names (``NAME``: the latest); :class:`NotFound` when none."""
    name, version, _ = _resolve(ref)
    return f"{name}/{version}"


def _resolve(ref: str | ModelRef) -> tuple[str, int, Any]:
    resolved = tracking.resolve_ref(ref)
    return resolved.name, resolved.version, resolved.entity


def _identity(mv: Any) -> dict[str, str]:
    """What an image or container of a registered version must carry: its run, store and package digest."""
    return {"run_id": mv.run_id, "store": tracking.store_id(), "digest": mv.tags.get(tracking.TAG_DIGEST) or None}


def build(ref: str | ModelRef, *, base_image: str | None = None, no_cache: bool = False,
          progress: Progress | None = None):
    """Build the Docker image of a registered version; tags the MLflow version with the image id.

    ``no_cache=True`` bypasses the engine's layer cache (a cold build)."""
    from .images.builder import build_image

    name, version, mv = _resolve(ref)
    progress = progress or Progress(f"build {name}/{version}")
    identity = _identity(mv)
    with version_lock(identity["store"], name, version):  # one build or deploy of a version at a time
        package = tracking.download_package(name, version)
        image = build_image(package, name=name, version=str(version), run_id=mv.run_id, store=identity["store"],
                            base_image=base_image, progress=progress, no_cache=no_cache)
        tracking.set_version_tags(name, version,
                                  {tracking.TAG_IMAGE_ID: image.image_id, tracking.TAG_IMAGE_TAG: image.tag})
    return image


def deploy(ref: str | ModelRef, *, port: int | None = None, base_image: str | None = None,
           progress: Progress | None = None, grpc_port: int | None = None, workers: int | None = None,
           memory: str | int | None = None, pids_limit: int | None = None,
           allowed_hosts: list[str] | str | None = None, token: str | bool | None = None):
    """Run a registered version's image as a container on 127.0.0.1 (building the image first if needed).

    Only an image of this very version (its run id, store and package digest) is used; otherwise one is built.
    ``NAME@ALIAS`` also serves the alias on a stable local port (:mod:`pyml_jupyter.routing`): deployed again
    after the alias moved, the new version starts, takes the port's traffic once ready, and the old one stops.
    HTTP is published on ``port`` and gRPC on ``grpc_port`` (free ports when None); ``workers`` sets the
    server's processes (default: one per CPU the container may use). The container is confined (see
    :mod:`pyml_jupyter.container_security`): ``memory`` (default ``"4g"``) and ``pids_limit`` (default 1024)
    bound it; ``allowed_hosts`` adds names its requests may carry in ``Host`` besides loopback and its own;
    ``token`` (a string, or True for a random one) makes every call but the health probes need
    ``Authorization: Bearer <token>`` (the returned :class:`Deployment` sends it)."""
    from .container_security import ContainerSettings
    from .deployments import run_deployment
    from .images.builder import find_image

    settings = ContainerSettings.build(memory=memory, pids_limit=pids_limit, allowed_hosts=allowed_hosts,
                                       token=token)
    name, version, mv = _resolve(ref)
    progress = progress or Progress(f"deploy {name}/{version}")
    identity = _identity(mv)
    with version_lock(identity["store"], name, version):  # a build of this version finishes first
        image = find_image(name, str(version), **identity)
        if image is None:
            image = build(ModelRef(name, version), base_image=base_image, progress=progress)
        deployment = run_deployment(image, name=name, version=str(version), run_id=mv.run_id, port=port,
                                    grpc_port=grpc_port, workers=workers, settings=settings, progress=progress)
    alias = parse_ref(ref).alias
    if alias is None:
        return deployment
    from .routing import serve_alias  # NAME@ALIAS: its stable port now sends new requests to this version

    return serve_alias(name, alias, deployment, progress=progress)


def prune(name: str, *, keep: int = 1) -> list:
    """Remove the old Docker images of model ``name``: all but the ``keep`` newest, never one a container uses."""
    from .images.builder import prune_images

    ref = parse_ref(name)
    if ref.version is not None or ref.alias is not None:
        raise InvalidName(f"prune takes a model name, not a version ({name!r}): e.g. prune('{ref.name}', keep=2).")
    return prune_images(ref.name, keep)


def deployments() -> list:
    """Deployments as the Docker engine knows them (state survives kernel and server restarts): running ones,
    and stopped ones with their exit code and last log lines (a crashed or killed server shows why)."""
    from .deployments import list_deployments

    return list_deployments(all=True)


def logs(ref: str | ModelRef, tail: int = 100) -> list[str]:
    """The last ``tail`` lines the container of ``ref`` (``NAME/VERSION``, or ``NAME``: the latest) wrote."""
    from .deployments import find_deployment

    name, version, mv = _resolve(ref)
    identity = _identity(mv)
    dep = find_deployment(name, str(version), all=True, run_id=identity["run_id"], store=identity["store"])
    if dep is None:
        raise NotFound(f"no container of {name}/{version} exists: deploy it first (%pyml_deploy {name}/{version}).")
    return dep.logs(tail=tail).splitlines()


def stop(ref: str) -> list:
    """Stop and remove the deployment(s) of NAME (every version), NAME/VERSION or NAME@ALIAS; the name is
    matched exactly (``Churn`` is not ``churn``)."""
    from .deployments import stop_deployment

    from .routing import remove_routes, stop_alias

    parsed = parse_ref(ref)
    name, version = parsed.name, parsed.version
    if parsed.alias is not None:  # the alias's stable port and the version it serves, else the version it names
        stopped = stop_alias(name, parsed.alias)
        if stopped:
            return stopped
        version = tracking.resolve_ref(parsed).version
    elif version is None:
        remove_routes(name)  # every version stops: so do the aliases' ports
    stopped = stop_deployment(name, None if version is None else str(version))
    if not stopped:
        raise NotFound(f"no deployment of {ref!r} is running.", hint=HINT_DEPLOYMENTS)
    return stopped


TEST_TARGETS = ("all", "container", "batch")


@_runtime_errors
def test(ref: str, sample: Any = None, *, target: str = "container", spark: Any = None,
         progress: Progress | None = None) -> "ParityReport | ParityTable":
    """Predict ``sample`` (default: the version's stored sample) in this process and on ``target``, and compare.

    ``target="all"`` predicts it in this process, a fresh process, the container over HTTP and gRPC (deploying
    it first if needed) and on Spark (a short-lived session in a child process, or ``spark``), and returns a
    :class:`~pyml_jupyter.parity_table.ParityTable`. ``target="container"`` (the running deployment) or
    ``"batch"`` (Spark) returns one :class:`~pyml_jupyter.parity.ParityReport`. A model that raises on the
    sample in this process is a :class:`~pyml_jupyter.errors.ModelFailed` (422).
    """
    from .parity import compare
    from .parity_targets import predict_here

    if target not in TEST_TARGETS:
        raise PymlError(f"target must be one of {', '.join(TEST_TARGETS)}, not {target!r}.")
    name, version, mv = _resolve(ref)
    ref = f"{name}/{version}"
    package = tracking.download_package(name, version)
    loaded, sample = _loaded_with_sample(package, sample, ref)
    if target == "all":
        from .parity_table import parity_table
        from .parity_targets import run_targets

        runs = run_targets(package, loaded, sample, ref=ref, spark=spark, progress=progress,
                           deployment=lambda: _running(name, version, mv, progress))
        return parity_table(ref, sample, runs)
    here = predict_here(loaded, sample, ref)
    t0 = time.perf_counter()
    if target == "container":
        # timing: the server's parse/validate/predict/serialize split
        actual = _running(name, version, mv, progress).predict(sample, timing=True)
    else:
        from .batch import predict_frame

        actual = predict_frame(package, sample, spark=spark)
    target_ms = (time.perf_counter() - t0) * 1e3
    report = compare(here.prediction, actual, sample=sample, target=target)
    report.latency["notebook_ms"] = here.latency["predict_ms"]
    report.latency.setdefault(f"{target}_ms", target_ms)
    report.ref = ref
    return report


def _loaded_with_sample(package: Path, sample: Any, ref: str) -> tuple[LoadedModel, Any]:
    """The package loaded here and the sample as the model sees it; the model's faults are :class:`ModelFailed`."""
    from .serving.schema import SchemaError

    try:
        loaded = load_package(package)
    except Exception as exc:  # noqa: BLE001 - the model's constructor or artifacts failed
        raise ModelFailed(f"{ref} could not be loaded in this process: {type(exc).__name__}: {exc}") from exc
    if sample is None:
        return loaded, loaded.info.read_sample()
    try:
        return loaded, loaded.enforce(sample)
    except SchemaError as exc:
        raise InvalidInput(f"The sample does not fit {ref}'s input schema: {exc}", exc.problems) from None


def _running(name: str, version: int, mv: Any, progress: Progress | None):
    """The running deployment of this very version (run and store), deployed now if there is none."""
    from .deployments import find_deployment

    identity = _identity(mv)
    return (find_deployment(name, str(version), run_id=identity["run_id"], store=identity["store"])
            or deploy(ModelRef(name, version), progress=progress))


@_runtime_errors
def predict_offline(ref: str, query: str, output_table: str, *, spark: Any = None,
                    keep: str | list[str] | None = None, mode: str = "error", progress: Progress | None = None):
    """Score the rows of a SQL ``query`` with a registered version on Spark, into ``output_table``; ``keep``
    names the query columns stored beside the predictions (a list, or a comma-separated string)."""
    from .batch import predict_offline as run_batch

    name, version, _ = _resolve(ref)
    package = tracking.download_package(name, version)
    result = run_batch(package, query, output_table, spark=spark, keep=keep, mode=mode, progress=progress)
    result.ref = f"{name}/{version}"
    return result



# ----------------------------------------------------------------------------------- promote, push, export


def promote(ref: str, alias: str = "champion", *, compare: str | int | None = None, targets: str = "all",
            progress: Progress | None = None):
    """Point the MLflow alias ``alias`` at the version ``ref`` names, after its contract and parity gates pass
    (parity on ``targets``: ``"all"``, or ``"container"``/``"batch"`` alone); ``compare`` (an alias, a version)
    also compares their predictions. See :mod:`pyml_jupyter.promotion`."""
    from .promotion import promote as run_promotion

    return run_promotion(ref, alias, compare=compare, targets=targets, progress=progress)


def push(ref: str, registry: str, *, progress: Progress | None = None):
    """Tag the version's image ``REGISTRY/pyml/NAME:VERSION`` (plus its alias tags) and push it, with the
    engine's credentials. See :mod:`pyml_jupyter.registry`."""
    from .registry import push as run_push

    return run_push(ref, registry, progress=progress)


def export(ref: str, format: str = "kserve", *, registry: str | None = None, output: str | None = None,
           progress: Progress | None = None):
    """Write Kubernetes manifests (``format`` "kserve": an InferenceService; "kubernetes": Deployment, Service,
    HorizontalPodAutoscaler) for the version's image in ``registry``. See :mod:`pyml_jupyter.manifests`."""
    from .manifests import export as run_export

    return run_export(ref, format, registry=registry, output=output, progress=progress)
