"""Build a model package into a Docker image with the Docker engine (the ``docker`` SDK, imported lazily).

:func:`build_image` is the whole path: resolve the wheels on the host (:mod:`.wheelhouse`), render the build
context (:mod:`.context`), stream the engine's build log into a :class:`~pyml_jupyter.progress.Progress`, and
return an :class:`ImageInfo`. Images carry labels (``pyml.model``, the exact registered name, ``pyml.version``,
``pyml.run_id``, ``pyml.digest``, ``pyml.store``, ``pyml.managed=true``), so :func:`find_image` asks the engine
rather than any local state, and matches the run and the store: ``churn`` v1 of two stores (or of a model
deleted and registered again) are two images.
"""

from __future__ import annotations

import html
import json
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import tempdirs
from ..errors import BuildError, NotFound, PymlError
from ..names import validate_name
from ..progress import Progress
from .context import (
    BuildContext,
    default_base_image,
    render_context,
    requirements_for,
    sanitize_tag,
    sanitize_version,
)
from ..serving.loader import CONTRACT_FILE
from . import labels as L
from .wheelhouse import TargetPlatform, cache_dir, ensure_wheelhouse

__all__ = ["ImageInfo", "build_image", "build_context", "docker_client", "find_image", "list_images", "identity_filters", "identity_tag",
           "remove_image", "prune_images", "probe_target", "MANAGED_LABEL"]

MANAGED_LABEL = L.MANAGED
ENGINE_UNREACHABLE = "Docker engine not reachable: start dockerd or set DOCKER_HOST"
BUILD_TIMEOUT = 3600  # seconds the engine may stay silent during one build step (a large pip install)


def docker_client(client: Any = None, *, error: type[PymlError] = BuildError, timeout: int = 120):
    """``client`` if given, else ``docker.from_env()``; raises ``error`` with a clear message when unreachable."""
    if client is not None:
        return client
    try:
        import docker
    except ImportError as exc:  # pragma: no cover - docker is a dependency
        raise error("The 'docker' Python package is not installed: pip install docker") from exc
    try:
        client = docker.from_env(timeout=timeout)
        client.ping()
    except Exception as exc:  # DockerException, requests' ConnectionError, a missing socket...
        raise error(f"{ENGINE_UNREACHABLE} ({type(exc).__name__}: {exc})") from exc
    return client


@dataclass
class ImageInfo:
    """A built model image, as the engine describes it."""

    tag: str
    image_id: str
    size_bytes: int
    labels: dict[str, str] = field(default_factory=dict)
    build_seconds: float | None = None
    log_tail: list[str] = field(default_factory=list)
    base_image: str = ""
    created: str = ""
    cached_steps: int = 0
    total_steps: int = 0

    @property
    def name(self) -> str:
        return self.labels.get(L.MODEL, "")

    @property
    def version(self) -> int:
        return L.label_version(self.labels)

    @property
    def run_id(self) -> str:
        return self.labels.get(L.RUN_ID, "")

    @property
    def digest(self) -> str:
        return self.labels.get(L.DIGEST, "")

    @property
    def store(self) -> str:
        return self.labels.get(L.STORE, "")

    @property
    def short_id(self) -> str:
        return self.image_id.split(":", 1)[-1][:12]

    def to_dict(self) -> dict:
        return {"tag": self.tag, "image_id": self.image_id, "size_bytes": self.size_bytes, "labels": self.labels,
                "build_seconds": self.build_seconds, "base_image": self.base_image, "created": self.created,
                "cached_steps": self.cached_steps, "total_steps": self.total_steps}

    @classmethod
    def from_image(cls, image, tag: str | None = None, **extra) -> "ImageInfo":
        attrs = image.attrs
        labels = dict((attrs.get("Config") or {}).get("Labels") or {})
        tags = image.tags or []
        return cls(tag=tag or (tags[0] if tags else ""), image_id=image.id, size_bytes=int(attrs.get("Size", 0)),
                   labels=labels, base_image=labels.get(L.BASE_IMAGE, ""), created=attrs.get("Created", ""),
                   **extra)

    def __repr__(self) -> str:
        took = f", built in {self.build_seconds:.1f}s" if self.build_seconds is not None else ""
        return f"<ImageInfo {self.tag} {self.short_id} {self.size_bytes / 1e6:.0f} MB{took}>"

    def _repr_html_(self) -> str:
        rows = [("image", self.tag), ("id", self.short_id), ("size", f"{self.size_bytes / 1e6:.0f} MB")]
        if self.build_seconds is not None:
            rows.append(("build", f"{self.build_seconds:.1f} s ({self.cached_steps}/{self.total_steps} steps cached)"))
        rows += [(k, v) for k, v in self.labels.items() if k.startswith("pyml.") and k != MANAGED_LABEL]
        body = "".join(f"<tr><th style='text-align:left'>{html.escape(k)}</th><td><code>{html.escape(str(v))}</code>"
                       "</td></tr>" for k, v in rows)
        return f"<table class='pyml-image'>{body}</table>"


# --------------------------------------------------------------------------------------------- target probe


def probe_target(client, base_image: str, progress: Progress | None = None) -> TargetPlatform:
    """The Python version and platform of ``base_image``, asked of its own interpreter (cached per image id)."""
    import docker

    try:
        image = client.images.get(base_image)
    except docker.errors.ImageNotFound:
        if progress:
            progress.log(f"Pulling base image {base_image}")
        try:
            image = client.images.pull(base_image)
        except docker.errors.APIError as exc:
            raise BuildError(f"Base image {base_image!r} is not on this Docker engine and could not be pulled: "
                             f"{exc.explanation or exc}. Pull or build it first, or pass base_image=...") from exc
    cached = cache_dir() / "targets" / (image.id.replace(":", "_") + ".json")
    try:
        known = json.loads(cached.read_text())
        return TargetPlatform(python_version=known["python_version"], platforms=tuple(known["platforms"]),
                              implementation=known.get("implementation", "cp"))
    except (OSError, ValueError, TypeError, KeyError):
        pass
    script = ("import json, platform, sys; print(json.dumps({'python': '%d.%d' % sys.version_info[:2], "
              "'libc': platform.libc_ver(), 'machine': platform.machine()}))")
    try:
        out = client.containers.run(image.id, entrypoint=["python", "-c", script], remove=True,
                                    network_disabled=True)
        info = json.loads(out.decode().strip().splitlines()[-1])
    except Exception as exc:
        raise BuildError(f"Base image {base_image!r} has no working 'python' command ({exc}); "
                         "use a python:X.Y-slim image or one derived from it.") from exc
    libc, libc_version = info["libc"]
    target = TargetPlatform.for_linux(info["python"], machine=info["machine"],
                                      libc="glibc" if libc == "glibc" else "musl", libc_version=libc_version or "1.2")
    cached.parent.mkdir(parents=True, exist_ok=True)
    cached.write_text(json.dumps(target.to_dict()))
    return target


# --------------------------------------------------------------------------------------------- building

_STEP_RE = re.compile(r"^Step (\d+)/(\d+) : (.*)$")


_LAYER_RE = re.compile(r"^\s*---> ([0-9a-f]{12,64})\s*$")
STAGE_REPOSITORY = "pyml-stages"


class _Layers:
    """The images one (legacy builder) build makes, read from its log: those it created (not from the cache)
    and the result of each stage before the last, which nothing else names."""

    def __init__(self) -> None:
        self.created: list[str] = []
        self.stages: list[tuple[str, str]] = []  # (stage name, result image id) of the stages before the last
        self._last, self._stage, self._reused = "", "", True

    def step(self, instruction: str) -> None:
        words = instruction.split()
        if words and words[0].upper() == "FROM":
            if self._last:
                self.stages.append((self._stage, self._last))
            self._stage = words[3] if len(words) >= 4 and words[2].upper() == "AS" else f"stage{len(self.stages)}"
            self._last, self._reused = "", True  # FROM names the base image: not ours
        else:
            self._reused = False

    def line(self, line: str) -> None:
        if "Using cache" in line:
            self._reused = True
        elif (m := _LAYER_RE.match(line)) is not None:
            self._last = m.group(1)
            if not self._reused and self._last not in self.created:
                self.created.append(self._last)


def _name_stages(client, layers: _Layers) -> None:
    """Tag each earlier stage's result ``pyml-stages/NAME:ID``: kept for the layer cache, never dangling."""
    for stage, image_id in layers.stages:
        try:
            client.api.tag(image_id, f"{STAGE_REPOSITORY}/{re.sub(r'[^a-z0-9]+', '-', stage.lower()) or 'stage'}",
                           image_id[:12])
        except Exception:  # noqa: BLE001 - removed meanwhile: nothing left to name
            pass


def _remove_created(client, layers: _Layers) -> None:
    """After a failed build: remove the untagged images this build created, newest first."""
    for image_id in reversed(layers.created):
        try:
            if not client.images.get(image_id).tags:
                client.api.remove_image(image_id, noprune=True)
        except Exception:  # noqa: BLE001 - in use, or already gone: nothing dangling either way
            pass


def build_context(context: BuildContext | str | Path, *, tag: str, progress: Progress | None = None,
                  client=None, no_cache: bool = False) -> ImageInfo:
    """Build a rendered context with the engine's ``/build`` API, streaming its log into ``progress``.

    ``no_cache=True`` rebuilds every layer (the engine's layer cache is not consulted). The result of each
    earlier stage (the dependencies) is tagged ``pyml-stages/NAME:ID``; a failed build removes the untagged
    images it created: no build leaves a dangling image behind."""
    client = docker_client(client)
    path = context.path if isinstance(context, BuildContext) else Path(context)
    step, steps, cached, tail = "", 0, 0, []
    image_id = ""
    layers = _Layers()
    started = time.perf_counter()

    def log(line: str) -> None:
        tail.append(line)
        del tail[:-200]
        if progress:
            progress.log(line)

    try:
        stream = client.api.build(path=str(path), tag=tag, decode=True, rm=True, forcerm=True, pull=False,
                                  nocache=no_cache, timeout=BUILD_TIMEOUT)
        for chunk in stream:
            if "stream" in chunk:
                for line in chunk["stream"].splitlines():
                    if not line.strip():
                        continue
                    log(line)
                    m = _STEP_RE.match(line)
                    if m:
                        step, steps = m.group(3), int(m.group(2))
                        layers.step(step)
                        if progress:
                            progress.set_fraction((int(m.group(1)) - 1) / steps)
                    else:
                        layers.line(line)
                        cached += "Using cache" in line
            elif "error" in chunk or "errorDetail" in chunk:
                message = (chunk.get("errorDetail") or {}).get("message") or chunk.get("error", "")
                log(message)
                if not _engine_answers(client):  # the error is the engine shutting down under the build
                    message = _engine_stopped(message)
                raise _build_failed(tag, step, tail, message)
            elif "aux" in chunk and isinstance(chunk["aux"], dict) and "ID" in chunk["aux"]:
                image_id = chunk["aux"]["ID"]
            elif chunk.get("status"):
                log(str(chunk["status"]))
    except BaseException as exc:
        _remove_created(client, layers)
        if isinstance(exc, BuildError) or not isinstance(exc, Exception):
            raise
        if _connection_lost(exc):
            raise _build_failed(tag, step, tail, _engine_stopped(f"{type(exc).__name__}: {exc}")) from exc
        raise _build_failed(tag, step, tail, f"{type(exc).__name__}: {exc}") from exc
    _name_stages(client, layers)
    seconds = time.perf_counter() - started
    image = client.images.get(image_id or tag)
    return ImageInfo.from_image(image, tag=tag, build_seconds=round(seconds, 2), log_tail=tail[-40:],
                                cached_steps=cached, total_steps=steps)


def _engine_stopped(cause: str) -> str:
    return (f"the Docker engine stopped answering mid-build ({cause.strip()}), so nothing was tagged. Check that it "
            "runs (`docker info`) and build again.")


def _engine_answers(client) -> bool:
    try:
        client.ping()
        return True
    except Exception:  # noqa: BLE001 - refused, reset, timed out: gone
        return False


def _connection_lost(exc: BaseException) -> bool:
    """Whether ``exc`` (or what caused it) is the engine's connection dropping or being refused."""
    import requests

    lost = (ConnectionError, requests.exceptions.ConnectionError, requests.exceptions.ChunkedEncodingError)
    for _ in range(10):  # the chain of causes, bounded
        if exc is None:
            return False
        if isinstance(exc, lost) or type(exc).__name__ == "ProtocolError":
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def _build_failed(tag: str, step: str, tail: list[str], message: str) -> BuildError:
    lines = tail[-20:]
    where = f" at step `{step}`" if step else ""
    text = (f"Building image {tag} failed{where}: {message.strip()}\n"
            "Last lines of the build log:\n" + "\n".join("  " + line for line in lines))
    return BuildError(text, details={"step": step, "log": lines, "tag": tag})


def build_image(
    package_dir: str | Path,
    *,
    name: str,
    version: str | int,
    run_id: str = "",
    store: str = "",
    base_image: str | None = None,
    progress: Progress | None = None,
    client=None,
    no_cache: bool = False,
) -> ImageInfo:
    """Build ``package_dir`` into the image ``pyml/NAME:VERSION`` and return what the engine says about it.

    Stages reported to ``progress``: "resolving dependencies" (wheels resolved on this machine, cached),
    "building image" (the engine's log, line by line), "done". Raises :class:`~pyml_jupyter.errors.BuildError`
    with the failing step and the last lines of its log. ``no_cache=True`` rebuilds every layer. The caller owns
    ``progress`` (this function does not call :meth:`~pyml_jupyter.progress.Progress.finish`).
    """
    from ..serving.loader import package_digest

    started = time.perf_counter()
    tag = sanitize_tag(name, version)
    package = Path(package_dir)
    if not (package / CONTRACT_FILE).is_file():
        raise NotFound(f"{package} is not a pyml model package (no {CONTRACT_FILE})")
    client = docker_client(client, timeout=BUILD_TIMEOUT)
    base_image = base_image or default_base_image()
    labels = {
        L.MODEL: validate_name(name),
        L.VERSION: sanitize_version(version),
        L.RUN_ID: run_id or "",
        L.DIGEST: package_digest(package),
        L.STORE: store or "",
        L.BASE_IMAGE: base_image,
        MANAGED_LABEL: "true",
        "org.opencontainers.image.title": tag.rsplit(":", 1)[0],
        "org.opencontainers.image.version": sanitize_version(version),
    }
    if progress:
        progress.set_stage("resolving dependencies")
    target = probe_target(client, base_image, progress)
    requirements = requirements_for(package)
    wheelhouse = ensure_wheelhouse(requirements, target, progress=progress)
    if progress:
        progress.set_stage("building image", 0.0)
    contexts = cache_dir() / "contexts"  # beside the wheelhouses: wheels are hard-linked, not copied
    contexts.mkdir(parents=True, exist_ok=True)
    previous = _image_id(client, tag)  # the image the tag names now: replaced by a rebuild
    with tempdirs.temporary("pyml-context-", contexts) as tmp:
        context = render_context(package, tmp / "context", base_image=base_image,
                                 requirements=requirements, labels=labels, wheelhouse=wheelhouse)
        info = build_context(context, tag=tag, progress=progress, client=client, no_cache=no_cache)
    repository = tag.rpartition(":")[0]
    if run_id:
        # A second tag naming the run: when ``pyml/NAME:VERSION`` moves to another store's (or a re-created
        # model's) version, this image keeps a name and is found again by its labels, never left dangling.
        client.api.tag(info.image_id, repository, identity_tag(version, run_id))
    if previous and previous != info.image_id:
        _retire(client, previous, repository, version)
    info.build_seconds = round(time.perf_counter() - started, 2)
    info.base_image = base_image
    if progress:
        progress.log(f"Built {tag} ({info.short_id}, {info.size_bytes / 1e6:.0f} MB) in {info.build_seconds:.1f}s")
        progress.set_stage("done", 1.0)
    return info


def _image_id(client, reference: str) -> str:
    try:
        return client.images.get(reference).id
    except Exception:  # noqa: BLE001 - ImageNotFound: nothing built under that name yet
        return ""


def _retire(client, image_id: str, repository: str, version: str | int) -> None:
    """An image a rebuild took the tag from: removed when nothing names or runs it, else tagged by its id."""
    try:
        image = client.images.get(image_id)
        if image.tags:
            return
        try:
            client.api.remove_image(image_id)  # with its untagged parents that nothing else builds on
        except Exception:  # noqa: BLE001 - a container still runs it: keep it, named
            client.api.tag(image_id, repository, sanitize_version(f"{version}-{image_id.split(':')[-1][:12]}"))
    except Exception:  # noqa: BLE001 - gone already
        pass


# --------------------------------------------------------------------------------------------- lookups


def identity_tag(version: str | int, run_id: str) -> str:
    """The tag naming one registered version's run: ``VERSION-RUNID`` (the run id cut to 12 characters)."""
    return sanitize_version(f"{sanitize_version(version)}-{run_id[:12]}")


def identity_filters(name: str | None = None, version: str | int | None = None, *, run_id: str | None = None,
                     store: str | None = None, digest: str | None = None) -> list[str]:
    """Engine label filters for pyml images or containers: of one model (its exact name), version, run, store."""
    filters = [f"{MANAGED_LABEL}=true"]
    for label, value in ((L.MODEL, None if name is None else validate_name(name)),
                         (L.VERSION, None if version is None else sanitize_version(version)),
                         (L.RUN_ID, run_id), (L.STORE, store), (L.DIGEST, digest)):
        if value:
            filters.append(f"{label}={value}")
    return filters


def list_images(name: str | None = None, version: str | int | None = None, client=None, *,
                run_id: str | None = None, store: str | None = None, digest: str | None = None) -> list[ImageInfo]:
    """Model images on the engine (newest first), optionally of one model, version, run, store or package."""
    client = docker_client(client)
    filters = identity_filters(name, version, run_id=run_id, store=store, digest=digest)
    images = client.images.list(filters={"label": filters})
    images.sort(key=lambda im: im.attrs.get("Created", ""), reverse=True)
    out = []
    for image in images:
        labels = (image.attrs.get("Config") or {}).get("Labels") or {}
        try:
            wanted = sanitize_tag(labels.get(L.MODEL, ""), labels.get(L.VERSION, ""))
        except PymlError:
            wanted = ""
        out.append(ImageInfo.from_image(image, tag=wanted if wanted in (image.tags or []) else None))
    return out


def find_image(name: str, version: str | int, client=None, *, run_id: str | None = None, store: str | None = None,
               digest: str | None = None) -> ImageInfo | None:
    """The newest image of a model version, found by its labels (and, when given, its run, store and package
    digest: an image of another store's or a re-created model's version does not match); ``None`` if none."""
    images = list_images(name, version, client=client, run_id=run_id, store=store, digest=digest)
    return images[0] if images else None


def remove_image(name: str, version: str | int, client=None, *, force: bool = False) -> int:
    """Remove every image of a model version; returns how many were removed."""
    client = docker_client(client)
    removed = 0
    for info in list_images(name, version, client=client):
        client.images.remove(info.image_id, force=force)
        removed += 1
    return removed


def prune_images(name: str, keep: int = 1, client=None) -> list[ImageInfo]:
    """Remove the images of model ``name`` (its exact name) but the ``keep`` newest; an image a container
    (running or stopped) uses is kept. Returns the removed images, newest first."""
    if isinstance(keep, bool) or not isinstance(keep, int) or keep < 0:
        raise PymlError(f"keep must be a number of images (0 or more), not {keep!r}.")
    client = docker_client(client)
    seen: dict[str, ImageInfo] = {}
    for info in list_images(name, client=client):
        seen.setdefault(info.image_id, info)
    removed = []
    for info in list(seen.values())[keep:]:
        if client.containers.list(all=True, filters={"ancestor": info.image_id}):
            continue
        try:
            client.images.remove(info.image_id, force=True)  # force: every tag of the image goes with it
        except Exception:  # noqa: BLE001 - removed meanwhile, or now in use: leave it
            continue
        removed.append(info)
    return removed
