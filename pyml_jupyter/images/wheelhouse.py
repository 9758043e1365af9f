"""Resolve and download an image's requirements on the build host, into a cached wheelhouse.

Inside a build container ``pip install`` cannot be trusted to reach an index: corporate networks put PyPI
behind a proxy, a private index or a TLS-inspecting gateway whose certificate only the host trusts. Copying
the host's pip configuration or CA bundle into the image would leak it into every image layer. So pyml_jupyter
resolves on the host, with the host's own pip and its configuration (index URLs, find-links, certificates,
constraints), for the image's Python version and platform::

    pip download --only-binary=:all: --python-version 3.11 --implementation cp --abi cp311 \\
                 --platform manylinux_2_36_x86_64 ... --platform manylinux2014_x86_64 -r requirements.txt

and the image installs from those wheels with ``--no-index``. Requirements available only as source
distributions are built into wheels with ``pip wheel`` on the host, when the host runs the image's Python
version (a wheel built here then matches the image).

Wheelhouses are cached under ``$PYML_CACHE_DIR/wheelhouses/<key>`` (default ``~/.cache/pyml_jupyter``), keyed by
a hash of the requirements, the Python version and the platform tags: a rebuild with unchanged requirements
downloads nothing.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from .. import tempdirs
from ..errors import BuildError
from ..progress import Progress
from .context import requirement_name

__all__ = ["TargetPlatform", "cache_dir", "ensure_wheelhouse", "wheelhouse_key"]

_OLDEST_GLIBC_MINOR = 17  # manylinux2014; older wheels are aliased below


@dataclass(frozen=True)
class TargetPlatform:
    """Where the wheels must run: the image's Python (``"3.11"``), implementation and platform tags."""

    python_version: str
    platforms: tuple[str, ...]
    implementation: str = "cp"

    @property
    def abi(self) -> str:
        return f"{self.implementation}{self.python_version.replace('.', '')}"

    @classmethod
    def for_linux(cls, python_version: str, *, machine: str = "x86_64", libc: str = "glibc",
                  libc_version: str = "2.17") -> "TargetPlatform":
        """Tags a Linux interpreter accepts: every manylinux (glibc) or musllinux tag up to its libc version."""
        python_version = ".".join(str(python_version).split(".")[:2])
        arch = {"amd64": "x86_64", "arm64": "aarch64"}.get(machine.lower(), machine.lower())
        try:
            major, minor = (int(x) for x in libc_version.split(".")[:2])
        except ValueError:
            major, minor = 2, _OLDEST_GLIBC_MINOR
        if libc == "musl":
            tags = [f"musllinux_{major}_{m}_{arch}" for m in range(minor, -1, -1)]
        else:
            minor = max(minor, _OLDEST_GLIBC_MINOR) if major == 2 else _OLDEST_GLIBC_MINOR
            tags = [f"manylinux_2_{m}_{arch}" for m in range(minor, _OLDEST_GLIBC_MINOR - 1, -1)]
            # pip expands manylinux2014 to manylinux2010 and manylinux1 itself.
            tags.append(f"manylinux2014_{arch}")
        return cls(python_version=python_version, platforms=tuple(tags))

    @classmethod
    def host(cls) -> "TargetPlatform":
        """This interpreter's own target (used when the base image cannot be inspected)."""
        libc, version = platform.libc_ver()
        return cls.for_linux(
            f"{sys.version_info.major}.{sys.version_info.minor}",
            machine=platform.machine() or "x86_64",
            libc="musl" if libc != "glibc" else "glibc",
            libc_version=version or "2.17",
        )

    def pip_args(self) -> list[str]:
        args = ["--only-binary=:all:", "--python-version", self.python_version,
                "--implementation", self.implementation, "--abi", self.abi, "--abi", "abi3", "--abi", "none"]
        for tag in self.platforms:
            args += ["--platform", tag]
        return args

    def to_dict(self) -> dict:
        return asdict(self)


def cache_dir() -> Path:
    """The cache folder: ``$PYML_CACHE_DIR``, else ``$XDG_CACHE_HOME/pyml_jupyter``, else ``~/.cache/pyml_jupyter``."""
    if os.environ.get("PYML_CACHE_DIR"):
        return Path(os.environ["PYML_CACHE_DIR"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "pyml_jupyter"


def wheelhouse_key(requirements: list[str], target: TargetPlatform) -> str:
    """The cache key of a wheelhouse: requirements (order-insensitive), Python version, implementation, platforms."""
    material = {
        "requirements": sorted(r.strip() for r in requirements),
        "target": target.to_dict(),
        "layout": 1,
    }
    return hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()[:24]


def _run_pip(args: list[str], progress: Progress | None, lines: list[str]) -> int:
    """Run the host's pip (with the host's configuration), streaming its output line by line."""
    command = [sys.executable, "-m", "pip", *args]
    env = dict(os.environ, PIP_PROGRESS_BAR="off", PYTHONUNBUFFERED="1")
    if progress:
        progress.log("$ pip " + " ".join(args))
    try:
        proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                bufsize=1, env=env)
    except OSError as exc:
        raise BuildError(f"Could not run pip on this machine ({exc}): install pip into {sys.executable}'s "
                         "environment.") from exc
    assert proc.stdout is not None
    for line in proc.stdout:
        line = line.rstrip()
        if not line:
            continue
        lines.append(line)
        if progress:
            progress.log(line)
    return proc.wait()


def ensure_wheelhouse(
    requirements: list[str],
    target: TargetPlatform | None = None,
    *,
    progress: Progress | None = None,
    cache: str | os.PathLike | None = None,
) -> Path:
    """A folder of wheels that satisfies ``requirements`` on ``target``, from the cache or downloaded now.

    Raises :class:`~pyml_jupyter.errors.BuildError` with pip's last lines when a requirement cannot be resolved.
    """
    target = target or TargetPlatform.host()
    root = Path(cache) if cache is not None else cache_dir()
    key = wheelhouse_key(requirements, target)
    final = root / "wheelhouses" / key
    if (final / "wheelhouse.json").is_file():
        if progress:
            progress.log(f"Using cached wheelhouse {final} ({len(list(final.glob('*.whl')))} wheels)")
        return final

    final.parent.mkdir(parents=True, exist_ok=True)
    work = tempdirs.make(".work-", final.parent)  # renamed into place when whole; swept if a crash left it
    try:
        req_file = work / "requirements.txt"
        req_file.write_text("".join(f"{r}\n" for r in requirements))
        wheels = work / "wheels"
        wheels.mkdir()
        if progress:
            progress.log(f"Resolving {len(requirements)} requirements for Python {target.python_version} "
                         f"({target.platforms[0] if target.platforms else 'any'}) with this machine's pip")
        lines: list[str] = []
        started = time.perf_counter()
        rc = _run_pip(["download", "--disable-pip-version-check", "--progress-bar", "off", "--dest", str(wheels),
                       *target.pip_args(), "--requirement", str(req_file)], progress, lines)
        method = "download"
        if rc != 0:
            host_python = f"{sys.version_info.major}.{sys.version_info.minor}"
            if host_python != target.python_version:
                raise _resolution_error(requirements, target, lines,
                                        extra=f"Some requirement has no wheel for Python {target.python_version}, "
                                              f"and this machine runs Python {host_python}, so it cannot build "
                                              "one for the image: pin a version that ships wheels, or use a base "
                                              f"image with Python {host_python}.")
            if progress:
                progress.log("Some requirements have no compatible wheel: building wheels on this machine "
                             "(pip wheel) instead")
            shutil.rmtree(wheels)
            wheels.mkdir()
            lines = []
            rc = _run_pip(["wheel", "--disable-pip-version-check", "--progress-bar", "off", "--wheel-dir",
                           str(wheels), "--requirement", str(req_file)], progress, lines)
            method = "wheel"
            if rc != 0:
                raise _resolution_error(requirements, target, lines)
        found = sorted(p.name for p in wheels.glob("*.whl"))
        names = {requirement_name(n.split("-", 1)[0]) for n in found}
        missing = [r for r in requirements if requirement_name(r) not in names]
        if missing:  # e.g. a requirement pip downloaded as an sdist; the image could not install it offline
            raise _resolution_error(requirements, target, lines, extra=f"No wheel for: {', '.join(missing)}")
        for wheel in wheels.iterdir():
            wheel.rename(work / wheel.name)
        wheels.rmdir()
        (work / "wheelhouse.json").write_text(json.dumps({
            "requirements": requirements, "target": target.to_dict(), "wheels": found, "method": method,
            "seconds": round(time.perf_counter() - started, 2), "created": time.time(),
        }, indent=2))
        try:
            work.rename(final)
        except OSError:
            if not (final / "wheelhouse.json").is_file():  # lost a race to a concurrent build: theirs is as good
                raise
            shutil.rmtree(work, ignore_errors=True)
        if progress:
            progress.log(f"Wheelhouse ready: {len(found)} wheels in {final}")
        return final
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise


def _resolution_error(requirements, target, lines, extra: str = "") -> BuildError:
    tail = [line for line in lines if not line.startswith("WARNING: Location ")][-20:]
    message = (
        f"Step 'resolving dependencies' failed: pip could not resolve the image's requirements for Python "
        f"{target.python_version} on {target.platforms[0] if target.platforms else 'linux'}."
        + (f"\n{extra}" if extra else "")
        + "\nRequirements: " + ", ".join(requirements)
        + "\nLast lines of pip's output:\n" + "\n".join("  " + line for line in tail)
    )
    return BuildError(message, details={"step": "resolving dependencies", "log": tail})
