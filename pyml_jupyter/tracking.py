"""MLflow: log a model package as a standard pyfunc model, register versions, find them again.

MLflow is the source of truth for models: names, versions, contract status and image ids live in the registry
(model versions and their tags). With nothing configured, MLflow's own embedded default is used: a local
SQLite store (``mlflow.db``, which supports the registry) and ``./mlruns`` artifacts in the working directory;
``MLFLOW_TRACKING_URI`` (a remote ``mlflow server``) is honoured as MLflow always does.

MLflow's own INFO lines ("Creating initial MLflow database tables...", "Successfully registered model ...") are
kept out of notebook and CLI output while pyml_jupyter calls MLflow; its warnings still show.
``PYML_MLFLOW_LOGS=1`` shows everything MLflow says.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import shutil
import sys
import threading
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, TypeVar

import numpy as np

from . import tempdirs
from .errors import HINT_REGISTER, InvalidName, NotFound, PymlError, TrackingError
from .names import ModelRef, name_key, parse_ref, validate_name
from .serving.loader import CONTRACT_FILE, package_digest
from .uris import redact

__all__ = [
    "TAG_STATUS", "TAG_IMAGE_ID", "TAG_IMAGE_TAG", "TAG_KIND", "TAG_DIGEST",
    "ModelVersion", "ModelRef", "validate_name", "parse_ref", "resolve_ref", "check_name_available",
    "log_and_register", "resolve_version",
    "download_package", "set_version_tags", "list_registered", "tracking_uri", "registry_uri", "store_id",
    "ui_url", "aliases", "set_alias",
]

TAG_STATUS = "pyml.contract_status"
TAG_KIND = "pyml.kind"
TAG_DIGEST = "pyml.digest"
TAG_IMAGE_ID = "pyml.image_id"
TAG_IMAGE_TAG = "pyml.image_tag"
TAG_ATTEMPT = "pyml.attempt"  # set when the run is created: a rollback finds the run even before it is returned
PACKAGE_DIR_NAME = "package"

F = TypeVar("F", bound=Callable[..., Any])


def _mlflow_errors(fn: F) -> F:
    """MLflow's own failures (server down, refused, bad URI) become a :class:`TrackingError` naming the store,
    and MLflow's INFO output stays out of the way while ``fn`` runs (:func:`quiet_mlflow`).

    Their text is redacted there: MLflow's messages carry the tracking URI, credentials included.
    """

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            with quiet_mlflow():
                return fn(*args, **kwargs)
        except PymlError:
            raise
        except Exception as e:  # noqa: BLE001 - MlflowException, requests' errors, OSError, ...
            raise TrackingError(f"MLflow at {redact(tracking_uri())} failed: {type(e).__name__}: {e}") from e

    return wrapper  # type: ignore[return-value]


@dataclass
class ModelVersion:
    """One registered version of a model: ``models:/NAME/VERSION``, its run and its contract status."""

    name: str
    version: int
    run_id: str
    contract_status: str = ""
    tags: dict[str, str] = field(default_factory=dict)
    report: Any = field(default=None, repr=False, compare=False)  # the ContractReport it was registered with

    @classmethod
    def from_mlflow(cls, mv: Any) -> "ModelVersion":
        """From MLflow's own ``ModelVersion`` entity (its version is a string there)."""
        tags = dict(mv.tags or {})
        return cls(name=mv.name, version=int(mv.version), run_id=mv.run_id or "",
                   contract_status=tags.get(TAG_STATUS, ""), tags=tags)

    @property
    def uri(self) -> str:
        return f"models:/{self.name}/{self.version}"

    @property
    def ref(self) -> str:
        return f"{self.name}/{self.version}"

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "version": self.version, "run_id": self.run_id, "uri": self.uri,
                "contract_status": self.contract_status, "tags": self.tags}

    def __repr__(self) -> str:
        return f"ModelVersion({self.uri}, run_id={self.run_id}, contract={self.contract_status or 'unknown'})"

    def _repr_html_(self) -> str:
        link = ui_url(f"#/models/{self.name}/versions/{self.version}")
        where = f" (<a href='{link}' target='_blank'>MLflow UI</a>)" if link else ""
        return (f"<div class='pyml-registered'>Registered <code>{self.uri}</code>{where}<br>"
                f"run <code>{self.run_id}</code>, contract check: <b>{self.contract_status or 'unknown'}</b></div>")


# The MLflow column type of each DataFrame schema dtype (tests/test_schema_tables.py checks that every column
# dtype is here); None: MLflow cannot express it, so the model is logged without a signature.
_MLFLOW_TYPES: dict[str, str | None] = {
    "bool": "boolean", "int8": "integer", "int16": "integer", "int32": "integer", "int64": "long",
    "uint8": "integer", "uint16": "integer", "uint32": "long", "uint64": "long", "float32": "float",
    "float64": "double", "string": "string", "datetime": "datetime", "binary": "binary", "object": None,
}


def mlflow_signature(input_schema: Any, output_schema: Any):
    """The MLflow signature of a package, derived from its schemas (not re-inferred by MLflow).

    Nullable integer and boolean columns are declared as MLflow's optional ``any``: MLflow's own enforcement
    rejects pandas' nullable ``Int64``/``boolean`` under every concrete type (ints with missing values cannot
    be ``long``, and are not safely ``double``). The package's schema, which runs next, enforces them exactly.
    """
    from mlflow.models.signature import ModelSignature
    from mlflow.types.schema import AnyType, ColSpec, Schema, TensorSpec

    def convert(schema: Any) -> Schema:
        if schema.kind == "tensor":
            return Schema([TensorSpec(np.dtype(t.dtype), tuple(-1 if d is None else d for d in t.shape), t.name)
                           for t in schema.tensors])
        cols = []
        for c in schema.columns:
            mtype = _MLFLOW_TYPES.get(c.dtype)
            if mtype is None:
                return None  # a dtype MLflow cannot express: leave the signature out rather than lie
            if c.nullable and mtype in ("integer", "long", "boolean"):
                mtype = AnyType()
            cols.append(ColSpec(mtype, c.name, required=not c.nullable))
        return Schema(cols)

    inputs, outputs = convert(input_schema), convert(output_schema)
    return ModelSignature(inputs=inputs, outputs=outputs) if inputs is not None else None


def _client():
    from mlflow import MlflowClient

    return MlflowClient()


class _QuietMlflow:
    """While pyml_jupyter calls MLflow: MLflow's INFO lines and printed notices ("Creating initial MLflow
    database tables...", "Successfully registered model ...") are dropped, its logged warnings still reach
    stderr. Muting goes through MLflow's own counter (the one its autologging uses), so it nests and is shared
    by threads (the server's jobs) with MLflow's own muting; the last one out restores the output."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._depth = 0
        self._muted: Any = None
        self._warnings: logging.Handler | None = None

    def __enter__(self) -> None:
        from mlflow.utils.autologging_utils.logging_and_warnings import MlflowEventsAndWarningsBehaviorGlobally

        with self._lock:
            self._depth += 1
            if self._depth == 1:
                self._muted = MlflowEventsAndWarningsBehaviorGlobally(
                    disable_event_logs=True, disable_warnings=False, reroute_warnings=False)
                self._muted.__enter__()
                self._warnings = logging.StreamHandler(sys.stderr)  # today's stderr (a kernel replaces it)
                self._warnings.setLevel(logging.WARNING)
                self._warnings.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
                logging.getLogger("mlflow").addHandler(self._warnings)

    def __exit__(self, *exc: Any) -> None:
        with self._lock:
            self._depth -= 1
            if self._depth == 0:
                logging.getLogger("mlflow").removeHandler(self._warnings)
                self._muted.__exit__(None, None, None)


_QUIET = _QuietMlflow()


def quiet_mlflow() -> contextlib.AbstractContextManager:
    """Keep MLflow's INFO output out of the notebook and CLI; ``PYML_MLFLOW_LOGS=1`` shows it."""
    if os.environ.get("PYML_MLFLOW_LOGS", "").strip().lower() in ("1", "true", "yes"):
        return contextlib.nullcontext()
    return _QUIET


def tracking_uri() -> str:
    import mlflow

    return mlflow.get_tracking_uri()  # may carry credentials: show it through uris.redact only


def registry_uri() -> str:
    import mlflow

    return mlflow.get_registry_uri()


def store_id(uri: str | None = None) -> str:
    """A short hash naming the model registry (by default the current one): images, containers and cached
    packages carry it, so two stores that both hold ``churn`` v1 are never confused. Credentials (user,
    password, query parameters such as tokens) do not count, and a relative SQLite or file path is made
    absolute, so the same store always has the same id."""
    import hashlib
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(uri or registry_uri())
    path = parts.path
    if parts.scheme in ("sqlite", "file", "") and not parts.netloc:
        local = path[1:] if parts.scheme == "sqlite" and path.startswith("/") else path
        path = ("/" if parts.scheme == "sqlite" else "") + os.path.abspath(os.path.expanduser(local or "."))
    host = (parts.hostname or "") + (f":{parts.port}" if parts.port else "")
    canonical = urlunsplit((parts.scheme.lower(), host.lower(), path.rstrip("/") or "/", "", ""))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def ui_url(path: str = "") -> str | None:
    """A browser link into the MLflow UI, when the tracking store is a server (or ``PYML_MLFLOW_UI`` is set)."""
    base = os.environ.get("PYML_MLFLOW_UI")
    if not base:
        uri = tracking_uri()
        base = uri if uri.startswith(("http://", "https://")) else None
    return redact(f"{base.rstrip('/')}/{path.lstrip('/')}") if base else None


def _serving_code_dir(tmp: Path) -> Path:
    """A folder holding only the serving runtime, as ``pyml_jupyter/serving`` (a namespace package)."""
    src = Path(__file__).parent / "serving"
    dst = tmp / "code" / "pyml_jupyter"
    shutil.copytree(src, dst / "serving", ignore=shutil.ignore_patterns("__pycache__"))
    return dst


@_mlflow_errors
def log_and_register(name: str, report: Any, *, experiment: str | None = None) -> ModelVersion:
    """Log a checked package (``report.package_dir``) as a pyfunc model in a new run, registered as a new
    version of ``name``, with ``report.sample`` as the input example.

    Nothing half-written survives a failure, an MLflow server dying, or Ctrl-C: the run is deleted and any
    version created is removed; what cannot be removed (the server is gone) is named in the error.
    """
    import mlflow

    check_name_available(name)
    package_dir, sample = Path(report.package_dir), report.sample
    client = _client()
    info = json.loads((package_dir / CONTRACT_FILE).read_text())

    digest = package_digest(package_dir)
    run = None
    version = None
    model_existed = True
    attempt = uuid.uuid4().hex
    try:
        # The experiment is looked up (or created) without making it the notebook's active experiment.
        experiment_id = _experiment_id(client, experiment) if experiment else None
        model_existed = bool(client.search_registered_models(filter_string=f"name = '{name}'"))
        with tempdirs.temporary("pyml-log-") as tmp:
            staged = Path(tmp) / PACKAGE_DIR_NAME
            shutil.copytree(package_dir, staged, ignore=shutil.ignore_patterns("__pycache__"))
            code_dir = _serving_code_dir(Path(tmp))
            # Inside a run the user started (or autologging did), the pyml run is its child.
            with mlflow.start_run(run_name=f"pyml-{name}", experiment_id=experiment_id,
                                  nested=mlflow.active_run() is not None, tags={TAG_ATTEMPT: attempt}) as run:
                mlflow.set_tags({TAG_STATUS: report.status, TAG_KIND: info["kind"], "pyml.class": info["class_name"],
                                 TAG_DIGEST: digest})
                mlflow.log_params({"pyml.class": info["class_name"], "pyml.kind": info["kind"],
                                   "pyml.python_version": info["python_version"]})
                for key, value in report.latency.items():
                    mlflow.log_metric(f"pyml.latency.{key}", float(value))
                mlflow.log_text(report.to_json(), "contract/report.json")
                mlflow.log_text(report._repr_html_(), "contract/report.html")
                signature = mlflow_signature(report.input_schema, report.output_schema)
                model_info = mlflow.pyfunc.log_model(
                    name="model",
                    loader_module="pyml_jupyter.serving.pyfunc",
                    data_path=str(staged),
                    code_paths=[str(code_dir)],
                    pip_requirements=list(info.get("requirements", [])),
                    signature=signature,
                    input_example=sample,
                    metadata={"pyml": {"kind": info["kind"], "class_name": info["class_name"], "digest": digest}},
                )
            mv = mlflow.register_model(
                model_info.model_uri, name,
                tags={TAG_STATUS: report.status, TAG_KIND: info["kind"], TAG_DIGEST: digest},
            )
            version = int(mv.version)
            return ModelVersion(name=name, version=version, run_id=run.info.run_id, contract_status=report.status,
                                tags={TAG_STATUS: report.status, TAG_KIND: info["kind"], TAG_DIGEST: digest})
    except BaseException as e:  # Ctrl-C too: roll back, then let it through
        leftovers = _rollback(client, name, version, run, model_existed, attempt)
        if isinstance(e, PymlError) and not leftovers or not isinstance(e, Exception):
            raise
        kept = ("nothing was kept" if not leftovers else
                f"MLflow could not remove {' and '.join(leftovers)}: delete them in the MLflow UI")
        raise TrackingError(f"registering {name!r} in MLflow ({tracking_uri()}) failed, and {kept}: "
                            f"{type(e).__name__}: {e}") from e


def _experiment_id(client, experiment: str) -> str:
    found = client.get_experiment_by_name(experiment)
    return found.experiment_id if found is not None else client.create_experiment(experiment)


def _rollback(client, name: str, version: int | None, run, model_existed: bool, attempt: str) -> list[str]:
    """Remove the version(s) of the run, a registered model this call created, the run and its logged model.

    Works from what exists in MLflow, not only from what the interrupted code got back: the run is found by
    its attempt tag and the versions by their run. Returns what could not be removed (e.g. the server is gone).
    """
    import mlflow

    leftovers: list[str] = []
    try:
        run_id = run.info.run_id if run is not None else _attempt_run_id(attempt)
    except Exception:  # noqa: BLE001 - the store is unreachable: it may hold a run of this attempt
        run_id = None
        leftovers.append(f"the run tagged {TAG_ATTEMPT}={attempt}, if MLflow created it")
    active = mlflow.active_run()
    if active is not None and active.info.run_id == run_id:  # interrupted before `with` took the run
        _quietly(lambda: mlflow.end_run("KILLED"))
    try:
        versions = {int(version)} if version is not None else set()
        if run_id:
            versions |= {int(v.version) for v in client.search_model_versions(f"run_id = '{run_id}'") if v.name == name}
        for v in sorted(versions):
            client.delete_model_version(name, str(v))
        # MLflow may have created the registered model before failing to create its version.
        if not model_existed and not client.search_model_versions(f"name='{name}'"):
            client.delete_registered_model(name)
    except Exception:  # noqa: BLE001 - best effort, the original error matters more
        if version is not None:  # (with none known, an unreachable registry created none either)
            leftovers.append(f"version {version} of {name!r}")
    if run_id is None:
        return leftovers
    experiment_id = run.info.experiment_id if run is not None else None
    if experiment_id is not None:
        _quietly(lambda: [client.delete_logged_model(m.model_id) for m in client.search_logged_models(
            experiment_ids=[experiment_id], filter_string=f"source_run_id = '{run_id}'")])
    if not _quietly(lambda: client.delete_run(run_id)):
        leftovers.append(f"run {run_id}")
    return leftovers


def _attempt_run_id(attempt: str) -> str | None:
    """The run a register() attempt created, if MLflow created one (raises when MLflow cannot be asked)."""
    import mlflow

    runs = mlflow.search_runs(search_all_experiments=True, filter_string=f"tags.`{TAG_ATTEMPT}` = '{attempt}'",
                              output_format="list")
    return runs[0].info.run_id if runs else None


def _quietly(fn: Callable[[], Any]) -> bool:
    """Run a clean-up step; whether it worked (its failure must not hide the error being handled)."""
    try:
        fn()
        return True
    except Exception:  # noqa: BLE001
        return False


@_mlflow_errors
def resolve_version(name: str, version: int | None = None):
    """The MLflow ``ModelVersion`` for NAME/VERSION (latest when version is None), or :class:`NotFound`."""
    return resolve_ref(ModelRef(validate_name(name), version)).entity


@_mlflow_errors
def resolve_ref(ref: str | ModelRef) -> ModelRef:
    """The registered version a reference means, asked of MLflow's registry: an alias or "latest" becomes its
    version number. The returned ref has ``version`` set and MLflow's ``ModelVersion`` as ``entity``."""
    from mlflow.exceptions import MlflowException

    ref = parse_ref(ref)
    client = _client()
    try:
        if ref.version is not None:
            mv = client.get_model_version(ref.name, str(ref.version))
        elif ref.alias is not None:
            mv = client.get_model_version_by_alias(ref.name, ref.alias)
        else:
            versions = client.search_model_versions(f"name='{ref.name}'")
            mv = max(versions, key=lambda v: int(v.version)) if versions else None
    except MlflowException as e:
        if getattr(e, "error_code", "") not in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND"):
            raise  # the store failed: a TrackingError (redacted), not "not registered"
        mv = None
    if mv is None and ref.alias is not None and _registered(client, ref.name):
        known = aliases(ref.name)
        raise NotFound(f"{ref.name!r} has no alias {ref.alias!r} in {redact(tracking_uri())} (its aliases: "
                       f"{', '.join(f'{a} -> v{v}' for a, v in sorted(known.items())) or 'none'}): point it at a "
                       f"version with promote('{ref.name}/VERSION', '{ref.alias}') (%pyml_promote, pyml promote), "
                       "or name a version instead. Nothing was changed.")
    if mv is None:
        what = f"model {ref.name!r}" if ref.version is None and ref.alias is None else repr(str(ref))
        raise NotFound(f"{what} is not registered in {redact(tracking_uri())}.", hint=HINT_REGISTER)
    return ModelRef(ref.name, int(mv.version), ref.alias, entity=mv)


def _registered(client: Any, name: str) -> bool:
    from mlflow.exceptions import MlflowException

    try:
        client.get_registered_model(name)
    except MlflowException:
        return False
    return True


@_mlflow_errors
def check_name_available(name: str) -> str:
    """``name`` validated, unless another registered model has the same name up to case or surrounding spaces
    (``Churn`` beside ``churn``): both would be the same image and container, so that is refused."""
    validate_name(name)
    try:
        found = _client().search_registered_models(filter_string=f"name ILIKE '%{name}%'", max_results=1000)
    except Exception as e:  # noqa: BLE001 - an unreachable or failing store: nothing was written yet
        raise TrackingError(redact(f"registering {name!r} in MLflow ({tracking_uri()}) failed, and nothing was "
                                   f"kept: {type(e).__name__}: {e}")) from e
    for rm in found:
        if rm.name != name and name_key(rm.name) == name_key(name):
            raise InvalidName(f"{name!r} differs only in case or spaces from the registered model {rm.name!r}, and "
                              f"the two could not be told apart in Docker: register it as {rm.name!r}, or choose "
                              "another name.")
    return name


def _cache_root() -> Path:
    return Path(os.environ.get("PYML_CACHE_DIR", Path.home() / ".cache" / "pyml_jupyter"))


@_mlflow_errors
def download_package(name: str, version: int) -> Path:
    """The package of a registered version, downloaded once into the local cache.

    The cache is keyed by the store (:func:`store_id`) and the version's run id, never by name and version
    alone: a model deleted and registered again, or ``churn`` v1 of another store, is another package. A
    download goes to a temporary folder beside its place and is renamed into it, so a reader sees a whole
    package or none; a package already in place is never removed (another thread may be reading it).
    """
    import mlflow

    mv = resolve_version(name, version)
    target = _cache_root() / "packages" / store_id() / mv.run_id
    package = target / "data" / PACKAGE_DIR_NAME
    if (package / CONTRACT_FILE).is_file():
        return package
    tmp = tempdirs.make(".download-", target.parent)
    try:
        mlflow.artifacts.download_artifacts(artifact_uri=f"models:/{name}/{mv.version}", dst_path=str(tmp))
        if not (tmp / "data" / PACKAGE_DIR_NAME / CONTRACT_FILE).is_file():
            raise NotFound(f"models:/{name}/{mv.version} is not a pyml_jupyter model (no package in its data).")
        try:
            tmp.rename(target)  # atomic; fails when another download got there first
        except OSError:
            if not (package / CONTRACT_FILE).is_file():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return package


def _ensure(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


@_mlflow_errors
def set_version_tags(name: str, version: int, tags: dict[str, str]) -> None:
    client = _client()
    for key, value in tags.items():
        client.set_model_version_tag(name, str(version), key, value)


@_mlflow_errors
def list_registered() -> list[tuple[Any, list[Any]]]:
    """Every registered model with its versions (newest first), models newest first."""
    client = _client()
    out = []
    for rm in client.search_registered_models(max_results=1000):
        versions = sorted(client.search_model_versions(f"name='{rm.name}'"), key=lambda v: -int(v.version))
        out.append((rm, versions))
    out.sort(key=lambda item: -(item[0].last_updated_timestamp or 0))
    return out


def aliases(name: str) -> dict[str, int]:
    """The aliases of a registered model, ``{alias: version}`` (empty for an unknown model)."""
    from mlflow.exceptions import MlflowException

    try:
        found = _client().get_registered_model(validate_name(name))
    except MlflowException:
        return {}
    return {alias: int(version) for alias, version in (found.aliases or {}).items()}


def set_alias(name: str, alias: str, version: int) -> None:
    """Point the registered-model alias ``alias`` of ``name`` at ``version``."""
    _client().set_registered_model_alias(validate_name(name), alias, str(version))
