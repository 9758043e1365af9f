"""Push a version's image to an image registry: ``REGISTRY/pyml/NAME:VERSION``, plus one tag per alias.

:func:`push` checks everything it can before it changes anything (the version's image is on the engine, the
registry answers), tags the image, and pushes each tag with the engine's ``/push`` API, reporting the layers'
progress. Credentials are the engine client's own: ``docker login`` (and any ``credsStore`` helper in
``~/.docker/config.json``) applies, nothing is passed or printed here. A push that fails removes the local
tags it added and says which tags did reach the registry, so nothing is reported as pushed that was not.
"""

from __future__ import annotations

import html
import re
import socket
from dataclasses import dataclass, field
from typing import Any

from . import tracking
from .errors import HINT_BUILD, NotFound, PymlError
from .images.context import TAG_REPOSITORY, sanitize_name, sanitize_version
from .progress import Progress

__all__ = ["PushError", "PushResult", "push", "validate_registry", "repository", "TAG_PUSHED"]

TAG_PUSHED = "pyml.pushed_image"
"""The MLflow version tag recording where the version's image was pushed (``REGISTRY/pyml/NAME:VERSION``)."""
_REGISTRY_RE = re.compile(r"^(?P<host>[A-Za-z0-9](?:[A-Za-z0-9.-]{0,252}[A-Za-z0-9])?|\[[0-9A-Fa-f:]+\])"
                          r"(?::(?P<port>[0-9]{1,5}))?(?P<path>(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*)$")
_CONNECT_TIMEOUT = 5.0


class PushError(PymlError):
    """The registry is unreachable or refused the push."""

    status = 502
    code = "push_error"


def validate_registry(registry: str) -> tuple[str, int]:
    """``HOST[:PORT][/PATH]`` (no scheme, no credentials) -> (host, port); the port defaults to 443."""
    text = registry.strip() if isinstance(registry, str) else ""
    m = _REGISTRY_RE.match(text)
    if not m or (m.group("port") and not 0 < int(m.group("port")) < 65536):
        raise PymlError(f"{registry!r} is not a registry address: give HOST[:PORT][/PATH] without a scheme or "
                        "credentials, e.g. 'registry.example.com' or '127.0.0.1:5000' (log in with `docker "
                        "login` first).")
    return m.group("host").strip("[]"), int(m.group("port") or 443)


def repository(registry: str, name: str) -> str:
    """``REGISTRY/pyml/NAME``: where a model's images go in a registry."""
    validate_registry(registry)
    return f"{registry.strip().rstrip('/')}/{TAG_REPOSITORY}/{sanitize_name(name)}"


@dataclass
class PushResult:
    """The tags of one version's image now in a registry, and the manifest digest they point to."""

    name: str
    version: int
    registry: str
    repository: str
    tags: list[str]
    digest: str = ""
    size_bytes: int = 0
    layers: dict[str, str] = field(default_factory=dict, repr=False)

    @property
    def image(self) -> str:
        """``REGISTRY/pyml/NAME:VERSION``: what a cluster pulls."""
        return f"{self.repository}:{self.version}"

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "version": self.version, "registry": self.registry, "repository": self.repository,
                "image": self.image, "tags": self.tags, "digest": self.digest, "size_bytes": self.size_bytes}

    def __repr__(self) -> str:
        return (f"<PushResult {self.name}/{self.version} -> {', '.join(f'{self.repository}:{t}' for t in self.tags)}"
                f" ({self.digest or 'no digest'})>")

    def _repr_html_(self) -> str:
        tags = "".join(f"<li><code>{html.escape(self.repository)}:{html.escape(t)}</code></li>" for t in self.tags)
        return (f"<div class='pyml-push'><b>Pushed {html.escape(self.name)}/{self.version}</b> to "
                f"<code>{html.escape(self.registry)}</code><ul>{tags}</ul>digest <code>{html.escape(self.digest)}"
                "</code></div>")


def _check_reachable(registry: str) -> None:
    host, port = validate_registry(registry)
    try:
        with socket.create_connection((host, port), timeout=_CONNECT_TIMEOUT):
            pass
    except OSError as exc:
        raise PushError(f"The registry {registry} is not reachable ({exc.strerror or exc}): start it or check the "
                        "address (HOST:PORT). Nothing was tagged or pushed.") from None


def _push_tag(client, repo: str, tag: str, progress: Progress) -> str:
    """Push one tag, logging each layer's status; returns the manifest digest or raises :class:`PushError`."""
    digest, last = "", {}
    try:
        for chunk in client.api.push(repo, tag=tag, stream=True, decode=True):
            if "error" in chunk or "errorDetail" in chunk:
                message = (chunk.get("errorDetail") or {}).get("message") or chunk.get("error", "")
                raise PushError(f"the registry refused {repo}:{tag}: {message.strip()}")
            status, layer = chunk.get("status", ""), chunk.get("id", "")
            aux = chunk.get("aux") or {}
            if aux.get("Digest"):  # the engine's confirmation: the manifest the registry stored
                digest = aux["Digest"]
            if status and last.get(layer) != status:  # one line per layer and state, not per progress tick
                last[layer] = status
                progress.log(f"{layer + ': ' if layer else ''}{status}")
    except PushError:
        raise
    except Exception as exc:  # noqa: BLE001 - requests/docker errors mid-stream
        raise PushError(f"pushing {repo}:{tag} failed: {type(exc).__name__}: {exc}") from exc
    if not digest:
        raise PushError(f"the registry did not confirm {repo}:{tag} (no manifest digest in the engine's answer)")
    return digest


def push(ref: str, registry: str, *, progress: Progress | None = None, client=None) -> PushResult:
    """Tag the version's image ``REGISTRY/pyml/NAME:VERSION`` (and ``:ALIAS`` per alias naming it) and push it.

    Raises :class:`~pyml_jupyter.errors.NotFound` when the version has no image on this engine, and
    :class:`PushError` when the registry is unreachable or refuses the push (the local tags are removed again).
    """
    from .api import _identity, _resolve
    from .images.builder import docker_client, find_image

    validate_registry(registry)  # before anything is resolved or touched
    name, version, mv = _resolve(ref)
    progress = progress or Progress(f"push {name}/{version}")
    client = docker_client(client, error=PushError)
    image = find_image(name, version, client=client, **_identity(mv))  # this store's, this run's image
    if image is None:
        raise NotFound(f"{name}/{version} has no image on this Docker engine to push: nothing was pushed.",
                       hint=HINT_BUILD)
    aliases = sorted(a for a, v in tracking.aliases(name).items() if v == version)
    repo = repository(registry, name)
    tags = [sanitize_version(version), *aliases]
    progress.set_stage(f"checking {registry}", 0.0)
    _check_reachable(registry)
    engine_image = client.images.get(image.image_id)
    added = [t for t in tags if f"{repo}:{t}" not in (engine_image.tags or [])]
    for t in added:
        engine_image.tag(repo, tag=t)
    pushed: list[str] = []
    digest = ""
    try:
        for i, t in enumerate(tags):
            progress.set_stage(f"pushing {repo}:{t}", i / len(tags))
            digest = _push_tag(client, repo, t, progress)
            pushed.append(t)
    except PushError as exc:
        for t in added:
            try:
                client.images.remove(f"{repo}:{t}", noprune=True)
            except Exception:  # noqa: BLE001 - best effort: the tag may be gone already
                pass
        where = f" Tags already in the registry: {', '.join(pushed)}." if pushed else " No tag reached the registry."
        why = " ".join(exc.message.split()).rstrip(".")  # the engine's text: one paragraph
        raise PushError(f"Pushing {name}/{version} to {registry} failed: {why}.{where} Check that you "
                        "may push there (`docker login " + registry.split('/')[0] + "`) and that it accepts "
                        "pushes.", details={"pushed": pushed, "failed": tags[len(pushed)]}) from None
    progress.set_stage("pushed", 1.0)
    tracking.set_version_tags(name, version, {TAG_PUSHED: f"{repo}:{tags[0]}@{digest}"})
    return PushResult(name=name, version=version, registry=registry, repository=repo, tags=tags, digest=digest,
                      size_bytes=image.size_bytes)
