"""Deployments: model images running as containers on this machine's Docker engine.

The engine is the source of truth. A deployment is a container named ``pyml-<name>-<version>``, bound to
``127.0.0.1`` and labelled ``pyml.model`` (the exact registered name), ``pyml.version``, ``pyml.run_id``,
``pyml.digest``, ``pyml.store`` and ``pyml.managed=true``; :func:`list_deployments` and :func:`find_deployment`
ask the engine for those labels, so deployments are found again after a kernel or server restart with no state
kept here, and a container of another store's (or a re-created model's) version is never taken for this one.

:class:`Deployment` (in :mod:`pyml_jupyter.deployment`) is the handle on one of them and a client of its model.
"""

from __future__ import annotations

import os
import re
import time
import uuid

from .container_security import ContainerSettings
from .deployment import _GRPC_PORT_KEY, _PORT_KEY, Deployment, _tail
from .errors import HINT_BUILD, DeployError, NotFound, PymlError
from .images import labels as L
from .images.builder import MANAGED_LABEL, ImageInfo, docker_client, identity_filters
from .names import validate_name
from .images.context import sanitize_name, sanitize_tag, sanitize_version
from .progress import Progress

__all__ = ["Deployment", "container_name", "find_deployment", "list_deployments", "run_deployment",
           "stop_deployment"]

# Settings of the numeric libraries that change which kernels run, and so the last bits of float results
# (OpenBLAS picks its kernels by CPU unless OPENBLAS_CORETYPE says otherwise; MKL_CBWR pins MKL's code path;
# thread counts change how reductions are split). The container gets the notebook's, for parity.
_NUMERIC_ENV = re.compile(r"^(OPENBLAS_|GOTO_|MKL_|OMP_|BLIS_|VECLIB_|NUMEXPR_)[A-Z0-9_]*$")


# --------------------------------------------------------------------------------------------- engine calls


def container_name(name: str, version: str | int) -> str:
    """``pyml-<name>-<version>``: one container per model version."""
    return f"pyml-{sanitize_name(name)}-{sanitize_version(version)}"






def _containers(client, *, name: str | None = None, version: str | None = None, all: bool = False,
                run_id: str | None = None, store: str | None = None) -> list:
    filters = identity_filters(name, version, run_id=run_id, store=store)
    return client.containers.list(all=all, filters={"label": filters})


def list_deployments(client=None, *, all: bool = False) -> list[Deployment]:
    """The deployments the engine runs (``all=True``: stopped ones too), by model name and version."""
    client = docker_client(client, error=DeployError)
    found = [Deployment.from_container(c, client) for c in _containers(client, all=all)]
    return sorted(found, key=lambda d: (d.name, d.version))


def find_deployment(name: str, version: str | int, client=None, *, all: bool = False, run_id: str | None = None,
                    store: str | None = None) -> Deployment | None:
    """The running deployment of a model version (``all=True``: in any state), or ``None``; given ``run_id``
    and ``store``, only a container of that very version matches."""
    client = docker_client(client, error=DeployError)
    found = _containers(client, name=name, version=str(version), all=all, run_id=run_id, store=store)
    return Deployment.from_container(found[0], client) if found else None


def stop_deployment(name: str, version: str | int | None = None, client=None) -> list[Deployment]:
    """Stop and remove the deployments of a model (every version, or one); returns what was removed.

    ``name`` is matched exactly: stopping ``Churn`` never stops ``churn``."""
    client = docker_client(client, error=DeployError)
    removed = []
    for container in _containers(client, name=name, version=None if version is None else str(version), all=True):
        deployment = Deployment.from_container(container, client)
        try:
            if container.status in ("running", "restarting", "paused"):
                container.stop(timeout=10)
            container.remove(force=True)
        except Exception as exc:  # noqa: BLE001 - a container removed meanwhile is what we wanted
            if "No such container" not in str(exc):
                raise DeployError(f"Could not remove {container.name}: {exc}") from exc
        deployment.status = "removed"
        removed.append(deployment)
    return removed


def _resolve_image(client, image: ImageInfo | str):
    import docker

    ref = image.image_id if isinstance(image, ImageInfo) else str(image)
    try:
        return client.images.get(ref)
    except docker.errors.ImageNotFound:
        tag = image.tag if isinstance(image, ImageInfo) else ref
        raise NotFound(f"Image {tag} is not on this Docker engine.", hint=HINT_BUILD) from None


def run_deployment(
    image: ImageInfo | str,
    *,
    name: str,
    version: str | int,
    run_id: str = "",
    port: int | None = None,
    grpc_port: int | None = None,
    workers: int | None = None,
    settings: ContainerSettings | None = None,
    timeout: float = 60,
    progress: Progress | None = None,
    client=None,
) -> Deployment:
    """Run a model image as a detached container on ``127.0.0.1`` and wait until ``/ping`` answers.

    ``port=None`` (``grpc_port=None``) lets the engine pick a free port for HTTP (gRPC). ``workers`` sets the
    server's worker processes (default: one per CPU the container may use). ``settings`` confine the container
    and say who may call it (default: :meth:`ContainerSettings.build`'s: memory and process limits, read-only
    root, no capabilities, loopback hosts, no token). The container gets this process's numeric-library settings
    (``OPENBLAS_*``, ``MKL_*``, ``OMP_*``...), so that it runs the same BLAS kernels as the notebook. A container
    of this version that runs (or is starting) from the same image with the same settings is joined; one from
    another image (a rebuild, another store's or a re-created model's version), with other settings, or a
    stopped one is replaced. A container-name conflict with a concurrent deploy never removes the other call's
    container. On failure the container this call created is removed and
    :class:`~pyml_jupyter.errors.DeployError` shows the end of its log.
    """
    import docker

    client = docker_client(client, error=DeployError)
    tag = sanitize_tag(name, version)
    cname = container_name(name, version)
    img = _resolve_image(client, image)
    try:
        settings = settings or ContainerSettings.build()
    except PymlError as exc:
        raise DeployError(str(exc)) from None
    if progress:
        progress.set_stage("starting container")
    joined = _join_or_clear(client, cname, img, settings, progress)
    if joined is not None:
        return _ready(joined, client, timeout, progress, remove_on_failure=False)

    deploy_id = uuid.uuid4().hex
    labels = _container_labels(img, name=name, version=version, run_id=run_id, deploy_id=deploy_id,
                               image=(image.tag or tag) if isinstance(image, ImageInfo) else str(image))
    environment = _container_environment(labels, settings, workers)
    try:
        # The host name is the container's name (a Docker network's name for it), which its own Host allow-list
        # accepts; Linux host names have at most 63 characters.
        container = client.containers.run(img.id, detach=True, name=cname,
                                          hostname=cname if len(cname) <= 63 else None, labels=labels,
                                          environment=environment,
                                          ports={_PORT_KEY: ("127.0.0.1", port),
                                                 _GRPC_PORT_KEY: ("127.0.0.1", grpc_port)},
                                          **settings.run_options())
    except docker.errors.APIError as exc:
        if exc.status_code == 409:  # another deploy created the container meanwhile: join it, never remove it
            joined = _join_or_clear(client, cname, img, settings, progress, replace=False, wait=10.0)
            if joined is not None:
                return _ready(joined, client, timeout, progress, remove_on_failure=False)
            raise DeployError(f"Could not start {cname}: another deploy created a container of that name from "
                              f"another image or with other settings meanwhile. Stop it (stop('{name}/{version}')) and deploy again.") from exc
        _remove_own(client, cname, deploy_id)  # created, then failed to start (a port in use...)
        hint = " (is the port already in use?)" if port and "port" in str(exc).lower() else ""
        raise DeployError(f"Could not start {cname} from {tag}: {exc.explanation or exc}{hint}") from exc
    container.reload()
    if progress:
        progress.log(f"Started {cname} ({container.short_id}) from {tag}")
    return _ready(container, client, timeout, progress, remove_on_failure=True)


def _container_labels(img, *, name: str, version: str | int, run_id: str, deploy_id: str,
                      image: str) -> dict[str, str]:
    """What a container says it serves (from its image's identity labels), for the engine to find it again."""
    image_labels = (img.attrs.get("Config") or {}).get("Labels") or {}
    return {
        L.MODEL: validate_name(name),
        L.VERSION: sanitize_version(version),
        L.RUN_ID: run_id or image_labels.get(L.RUN_ID, ""),
        L.DIGEST: image_labels.get(L.DIGEST, ""),
        L.STORE: image_labels.get(L.STORE, ""),
        L.IMAGE: image,
        "pyml.deploy_id": deploy_id,  # which call created it: only that call ever removes it on failure
        MANAGED_LABEL: "true",
    }


def _container_environment(labels: dict[str, str], settings: ContainerSettings,
                           workers: int | None) -> dict[str, str]:
    """The notebook's numeric-library settings, the model's identity, the settings' access variables, workers."""
    environment = {k: v for k, v in os.environ.items() if _NUMERIC_ENV.match(k)}
    environment.update({"PYML_MODEL_NAME": labels[L.MODEL], "PYML_MODEL_VERSION": labels[L.VERSION],
                        "PYML_RUN_ID": labels[L.RUN_ID], **settings.environment()})
    if workers is not None:
        if int(workers) < 1:
            raise DeployError(f"workers must be at least 1, not {workers}.")
        environment["PYML_WORKERS"] = str(int(workers))
    return environment


def _join_or_clear(client, cname: str, img, settings: ContainerSettings, progress: Progress | None, *,
                   replace: bool = True, wait: float = 0.0):
    """The container ``cname`` if it is (or is becoming) a deployment of the image ``img`` with ``settings``;
    otherwise, with
    ``replace``, a stopped one or one of another image (a rebuild, another store's or a re-created model's
    version) is removed and ``None`` returned. ``wait``: seconds to wait for a container whose name the engine
    has reserved (a concurrent create) to become visible."""
    import docker

    deadline = time.monotonic() + wait
    while True:
        try:
            existing = client.containers.get(cname)
            break
        except docker.errors.NotFound:
            if time.monotonic() >= deadline:
                return None
            time.sleep(0.1)
    if (existing.attrs.get("Image") == img.id and existing.status in ("created", "running", "restarting")
            and settings.matches(existing)):
        if progress:
            progress.log(f"{cname} already runs this image: joining it")
        return existing
    labels = (existing.attrs.get("Config") or {}).get("Labels") or {}
    if labels.get(MANAGED_LABEL) != "true":
        raise DeployError(f"A container named {cname} exists and was not started by pyml_jupyter: it is left alone. "
                          f"Rename or remove it (docker rm -f {cname}) and deploy again.")
    if not replace:
        return None
    if progress:
        progress.log(f"Replacing {cname} ({existing.status}, image {existing.attrs.get('Image', '')[7:19]})")
    try:
        existing.remove(force=True)
    except docker.errors.NotFound:
        pass
    return None


def _remove_own(client, cname: str, deploy_id: str) -> None:
    """Remove the container ``cname`` only if this call created it (its ``pyml.deploy_id`` label)."""
    import docker

    try:
        container = client.containers.get(cname)
        if ((container.attrs.get("Config") or {}).get("Labels") or {}).get("pyml.deploy_id") == deploy_id:
            container.remove(force=True)
    except docker.errors.NotFound:
        pass
    except docker.errors.APIError:
        pass


def _ready(container, client, timeout: float, progress: Progress | None, *, remove_on_failure: bool) -> Deployment:
    """Wait until ``container`` serves ``/ping``; a container this call created is removed if it never does."""
    import docker

    container.reload()
    deployment = Deployment.from_container(container, client)
    try:
        _wait_ready(container, client, deployment, timeout, progress)
    except DeployError:
        if remove_on_failure:
            try:
                container.remove(force=True)
            except docker.errors.APIError:
                pass
        raise
    if progress:
        progress.log(f"{container.name} serves at {deployment.url}")
        progress.set_stage("running", 1.0)
    return deployment


def _wait_ready(container, client, deployment: Deployment, timeout: float, progress: Progress | None) -> None:
    """Poll until the container runs and ``/ping`` answers 200; raise :class:`DeployError` with its log if not."""
    if progress:
        progress.set_stage("waiting for the model to load")
    deadline = time.monotonic() + timeout
    delay = 0.05
    while True:
        container.reload()
        if container.status in ("exited", "dead"):
            state = container.attrs.get("State") or {}
            code = f"{state.get('ExitCode')}, out of memory: raise deploy(memory=...)" if state.get("OOMKilled") \
                else state.get("ExitCode")
            raise DeployError(f"{container.name} stopped (exit code {code}) before it served /ping. Last lines of "
                              f"its log:\n{_tail(container)}", details={"log": _tail(container).splitlines()})
        if not deployment.url:
            deployment.url = Deployment.from_container(container, client).url
        if container.status == "running" and deployment.ping(timeout=2):
            deployment.status = "running"
            if progress:
                progress.log(f"{deployment.url}/ping answered: ready")
            return
        if time.monotonic() > deadline:
            raise DeployError(f"{container.name} did not answer {deployment.url or '/'}ping within {timeout:.0f}s. "
                              f"Last lines of its log:\n{_tail(container)}",
                              details={"log": _tail(container).splitlines()})
        time.sleep(delay)
        delay = min(delay * 1.5, 0.5)
