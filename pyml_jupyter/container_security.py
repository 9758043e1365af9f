"""How a deployment's container is confined, and who may call it: the settings ``deploy()`` hands the engine.

By default every model container runs

* with a **memory limit** (``memory``, default 4 GiB, no swap beyond it) and a **process limit**
  (``pids_limit``, default 1024 processes and threads);
* on a **read-only root filesystem**, with tmpfs mounts for what the runtime and libraries write
  (``/tmp`` and the ``pyml`` user's home, counted in the memory limit);
* with ``no-new-privileges`` and **every Linux capability dropped**, as the image's non-root user.

and serves only requests naming an allowed ``Host`` (loopback, its own names and ``allowed_hosts``), with an
optional bearer ``token`` (see ``pyml_jupyter/serving/access.py`` for the server side). The token goes to the
container as ``PYML_TOKEN``; :class:`~pyml_jupyter.deployments.Deployment` reads it back from the engine and
sends it, so a deployment found again after a kernel restart still works. It is never printed.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from typing import Iterable

from .errors import PymlError

__all__ = ["ContainerSettings", "DEFAULT_MEMORY", "DEFAULT_PIDS_LIMIT", "TMPFS", "parse_memory"]

DEFAULT_MEMORY = "4g"
DEFAULT_PIDS_LIMIT = 1024
USER_HOME = "/home/pyml"
USER_ID = 10001
# What the runtime may write: temporary files (tempfile, joblib) and the user's home (library caches).
TMPFS = {"/tmp": "rw,nosuid,nodev,size=256m",
         USER_HOME: f"rw,nosuid,nodev,noexec,size=64m,uid={USER_ID},gid={USER_ID},mode=0700"}
_UNITS = {"": 1, "b": 1, "k": 1024, "m": 1024 ** 2, "g": 1024 ** 3, "t": 1024 ** 4}
_MEMORY_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([bkmgt]?)(?:i?b)?\s*$", re.IGNORECASE)
_HOST_RE = re.compile(r"^(\*|\.?[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*|\[?[0-9a-f:.]+\]?)$")
_MIN_MEMORY = 64 * 1024 ** 2


def parse_memory(value: str | int) -> int:
    """Bytes of a memory size: ``536870912``, ``"512m"``, ``"2g"``, ``"1.5GiB"`` (at least 64 MiB)."""
    match = _MEMORY_RE.match(str(value)) if not isinstance(value, bool) else None
    if match is None:
        raise PymlError(f"memory must be a size such as '512m' or '4g' (or a number of bytes), not {value!r}.")
    size = int(float(match.group(1)) * _UNITS[match.group(2).lower()])
    if size < _MIN_MEMORY:
        raise PymlError(f"memory {value!r} is below 64m: a model server needs more than that.")
    return size


def _hosts(allowed_hosts: Iterable[str] | str | None) -> list[str]:
    if allowed_hosts is None:
        return []
    items = allowed_hosts.split(",") if isinstance(allowed_hosts, str) else list(allowed_hosts)
    hosts = []
    for item in items:
        host = str(item).strip().lower()
        if not host:
            continue
        if not _HOST_RE.match(host):
            raise PymlError(f"allowed_hosts: {item!r} is not a host name or address (use names such as "
                            "'models.example.com', '.example.com' for its subdomains, an IP address, or '*').")
        hosts.append(host)
    return hosts


def _token(token: str | bool | None) -> str:
    if token is None or token is False:
        return ""
    if token is True:
        return secrets.token_urlsafe(32)
    if not isinstance(token, str) or not re.fullmatch(r"[\x21-\x7e]{16,512}", token):
        raise PymlError("token must be 16 to 512 printable characters without spaces (or True for a random one).")
    return token


@dataclass(frozen=True)
class ContainerSettings:
    """Limits, confinement and access settings of one deployment's container."""

    memory: int
    pids_limit: int
    allowed_hosts: tuple[str, ...] = ()
    token: str = ""

    def __repr__(self) -> str:  # the token stays out of logs and displays
        return (f"ContainerSettings(memory={self.memory}, pids_limit={self.pids_limit}, "
                f"allowed_hosts={list(self.allowed_hosts)}, token={'set' if self.token else 'none'})")

    @classmethod
    def build(cls, *, memory: str | int | None = None, pids_limit: int | None = None,
              allowed_hosts: Iterable[str] | str | None = None, token: str | bool | None = None,
              extra_hosts: Iterable[str] = ()) -> "ContainerSettings":
        """Validated settings (defaults for what is None); ``token=True`` makes a random one. ``extra_hosts``
        (e.g. the container's name on a Docker network) are allowed besides ``allowed_hosts``."""
        if pids_limit is None:
            pids_limit = DEFAULT_PIDS_LIMIT
        if isinstance(pids_limit, bool) or not isinstance(pids_limit, int) or pids_limit < 16:
            raise PymlError(f"pids_limit must be an integer of at least 16 (processes and threads), not "
                            f"{pids_limit!r}.")
        hosts = _hosts(allowed_hosts)
        hosts += [h for h in extra_hosts if h not in hosts]
        return cls(memory=parse_memory(DEFAULT_MEMORY if memory is None else memory), pids_limit=pids_limit,
                   allowed_hosts=tuple(hosts), token=_token(token))

    def environment(self) -> dict[str, str]:
        """The server's environment for these settings."""
        env = {"PYML_ALLOWED_HOSTS": ",".join(self.allowed_hosts)}
        if self.token:
            env["PYML_TOKEN"] = self.token
        return env

    def run_options(self) -> dict:
        """Keyword arguments of ``docker.containers.run`` that confine the container."""
        return {"mem_limit": self.memory, "memswap_limit": self.memory, "pids_limit": self.pids_limit,
                "read_only": True, "tmpfs": dict(TMPFS), "security_opt": ["no-new-privileges:true"],
                "cap_drop": ["ALL"]}

    def matches(self, container) -> bool:
        """True when a running container was started with these settings (so it can be kept as is)."""
        attrs = container.attrs
        host = attrs.get("HostConfig") or {}
        env = dict(item.partition("=")[::2] for item in (attrs.get("Config") or {}).get("Env") or [])
        return (host.get("Memory") == self.memory and host.get("PidsLimit") == self.pids_limit
                and bool(host.get("ReadonlyRootfs")) and env.get("PYML_TOKEN", "") == self.token
                and env.get("PYML_ALLOWED_HOSTS", "") == ",".join(self.allowed_hosts))
