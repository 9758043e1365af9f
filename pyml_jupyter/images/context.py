"""Render a Docker build context for a model package: a pure function, package in, folder out.

The folder holds everything ``docker build`` needs, so a platform engineer can read it, rebuild it by hand
(``docker build -t pyml/NAME:VERSION FOLDER``) and audit what goes into the image::

    Dockerfile          two stages: "dependencies" (a venv from ./wheels, offline) and the final image
    .dockerignore       keeps bytecode and editor litter out of the image
    requirements.txt    the model's pinned requirements plus the serving runtime's, one per distribution
    wheels/             the wheels those requirements resolve to, downloaded on the build host
                        (see :mod:`pyml_jupyter.images.wheelhouse`); used by the first stage only
    runtime/            ``pyml_jupyter/serving/``: the HTTP serving runtime, a leaf package
    model/              the model package (pyml.json, model.py, artifacts/, requirements.txt, sample.json)

Layers are ordered from the least to the most frequently changing: base image, dependencies, runtime, model
package, then the per-version labels. A new version of a model whose requirements did not change reuses every
layer but the last few, so it builds in seconds.

Nothing host-specific is copied into the final image: no pip configuration, no certificates, no tokens and no
caches. The wheels and ``requirements.txt`` exist only in the first stage, whose venv alone is copied over.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

from ..errors import BuildError, InvalidName
from ..names import MAX_NAME_LENGTH, NAME_RULE, validate_name
from ..serving.loader import CONTRACT_FILE
from . import labels as L

__all__ = [
    "BuildContext",
    "CONTAINER_PORT",
    "GRPC_CONTAINER_PORT",
    "RUNTIME_OPTIONAL_REQUIREMENTS",
    "RUNTIME_REQUIREMENTS",
    "USER_UID",
    "default_base_image",
    "merge_requirements",
    "requirement_name",
    "requirements_for",
    "render_context",
    "render_dockerfile",
    "runtime_requirements",
    "sanitize_name",
    "sanitize_tag",
    "sanitize_version",
]

CONTAINER_PORT = 8080
GRPC_CONTAINER_PORT = 8081  # the Open Inference Protocol over gRPC
USER_UID = 10001
MODEL_DIR = "/opt/pyml/model"
RUNTIME_ROOT = "/opt/pyml"
VENV_DIR = "/opt/venv"
TAG_REPOSITORY = "pyml"

# What the serving runtime imports besides the standard library. The runtime package declares the same tuples
# (``pyml_jupyter.serving.RUNTIME_REQUIREMENTS`` and ``RUNTIME_OPTIONAL_REQUIREMENTS``); these copies are used
# when it does not. The optional ones (a faster HTTP parser and event loop) go into an image when installed here.
RUNTIME_REQUIREMENTS: tuple[str, ...] = ("starlette", "uvicorn", "pandas", "numpy", "grpcio", "protobuf")
RUNTIME_OPTIONAL_REQUIREMENTS: tuple[str, ...] = ("httptools", "uvloop")

# Docker's grammar for one path component of a repository name, restricted to single separators.
_VERSION_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")


# --------------------------------------------------------------------------------------------------- names


def sanitize_name(name: str) -> str:
    """The model name as it appears in image tags, container names and labels: lowercase, Docker-safe.

    Surrounding spaces are dropped and the name lowercased; the rest must pass
    :func:`~pyml_jupyter.names.validate_name` (the one rule for model names), else
    :class:`~pyml_jupyter.errors.InvalidName` says the rule, so two different names never end up as one image.
    """
    if not isinstance(name, str) or not name.strip():
        raise InvalidName(f"A model name is required: {NAME_RULE}.")
    candidate = name.strip()
    try:
        return validate_name(candidate).lower()
    except InvalidName as exc:
        suggestion = re.sub(r"[^a-z0-9]+", "-", candidate.lower()).strip("-")[:MAX_NAME_LENGTH].strip("-")
        hint = f" For example: {suggestion!r}." if suggestion else ""
        raise InvalidName(f"Model name {name!r} cannot be used for a Docker image: use {NAME_RULE}.{hint}") from exc


def sanitize_version(version: int | str) -> str:
    """A model version as a Docker tag: ``[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`` (MLflow versions are integers)."""
    text = str(version).strip() if version is not None else ""
    if not _VERSION_RE.match(text):
        raise InvalidName(
            f"Model version {version!r} cannot be used as a Docker tag: use up to 128 letters, digits, "
            "'_', '.' or '-', not starting with '.' or '-'."
        )
    return text


def sanitize_tag(name: str, version: int) -> str:
    """``pyml/<name>:<version>``, the image tag of a model version (see :func:`sanitize_name`)."""
    return f"{TAG_REPOSITORY}/{sanitize_name(name)}:{sanitize_version(version)}"


def default_base_image() -> str:
    """``python:X.Y-slim`` for the running interpreter, so the image runs the Python the model was built on."""
    return f"python:{sys.version_info.major}.{sys.version_info.minor}-slim"


# --------------------------------------------------------------------------------------------- requirements


def requirement_name(requirement: str) -> str:
    """The normalised distribution name of a requirement line (PEP 503): ``Scikit_Learn>=1`` -> ``scikit-learn``."""
    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
    if not match:
        raise ValueError(f"not a requirement: {requirement!r}")
    return re.sub(r"[-_.]+", "-", match.group(1)).lower()


def _clean_lines(lines) -> list[str]:
    out = []
    for line in lines:
        line = line.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("-"):
            # Options (-e, -r, --index-url, --extra-index-url, --trusted-host ...) would leak host configuration
            # into the build and bypass the wheelhouse: a package's requirements are plain pins only.
            raise ValueError(f"unsupported line in requirements: {line!r} (only 'name==version' pins are allowed)")
        out.append(line)
    return out


def _is_pinned(line: str) -> bool:
    return bool(re.search(r"(==|~=|>=|<=|!=|<|>|@)", line.split(";", 1)[0]))


def merge_requirements(*groups) -> list[str]:
    """Concatenate requirement lists, one line per distribution: the first one wins (earlier groups first),
    except that a bare name (``pandas``) gives way to a later line that pins it (``pandas==2.2.3``)."""
    seen: dict[str, str] = {}
    for group in groups:
        for line in _clean_lines(group):
            name = requirement_name(line)
            if name not in seen or (not _is_pinned(seen[name]) and _is_pinned(line)):
                seen[name] = line
    return list(seen.values())


def runtime_requirements(names=None, optional=None) -> list[str]:
    """The serving runtime's requirements pinned to the versions installed here (what the tests ran against),
    then those of its ``optional`` requirements (default: httptools, uvloop) that are installed here, pinned
    likewise; an optional one that is not installed here stays out of the image (the runtime works without)."""
    if names is None:
        try:
            from ..serving import RUNTIME_REQUIREMENTS as names  # type: ignore[attr-defined]
        except ImportError:
            names = RUNTIME_REQUIREMENTS
    if optional is None:
        try:
            from ..serving import RUNTIME_OPTIONAL_REQUIREMENTS as optional  # type: ignore[attr-defined]
        except ImportError:
            optional = RUNTIME_OPTIONAL_REQUIREMENTS
    out = []
    for name in names:
        try:
            out.append(f"{name}=={metadata.version(name)}")
        except metadata.PackageNotFoundError:
            out.append(name)
    for name in optional:
        try:
            out.append(f"{name}=={metadata.version(name)}")
        except metadata.PackageNotFoundError:
            pass
    return out


def requirements_for(package_dir: str | os.PathLike) -> list[str]:
    """The image's requirements: the package's own pins, then the runtime's for anything it does not pin."""
    path = Path(package_dir) / "requirements.txt"
    model = path.read_text().splitlines() if path.is_file() else []
    try:
        return merge_requirements(model, runtime_requirements())
    except ValueError as exc:
        raise BuildError(f"{path}: {exc}") from None


# --------------------------------------------------------------------------------------------- rendering


@dataclass
class BuildContext:
    """A rendered build context: the folder to hand to ``docker build``, and what went into it."""

    path: Path
    dockerfile: str
    base_image: str
    requirements: list[str]
    labels: dict[str, str] = field(default_factory=dict)
    has_wheelhouse: bool = False

    def __repr__(self) -> str:
        return (f"BuildContext({str(self.path)!r}, base_image={self.base_image!r}, "
                f"{len(self.requirements)} requirements, wheelhouse={self.has_wheelhouse})")


def _quote(value: str) -> str:
    """A Dockerfile double-quoted string (LABEL/ENV): JSON escaping, plus ``$`` escaped against expansion."""
    if "\n" in value or "\r" in value:
        raise InvalidName(f"label value {value!r} contains a line break")
    return json.dumps(value, ensure_ascii=False).replace("$", "\\$")


# The libraries' own test suites (about a quarter of a scientific venv) are never imported when a model runs.
_PRUNE_TESTS = f" && find {VENV_DIR}/lib -depth -type d -name tests -path '*/site-packages/*' -exec rm -rf {{}} +\n"

_ENV_FROM_LABELS = {L.MODEL: "PYML_MODEL_NAME", L.VERSION: "PYML_MODEL_VERSION", L.RUN_ID: "PYML_RUN_ID"}


def _install_stage(wheelhouse: bool) -> str:
    """The dependency stage's install step: offline from the rendered wheelhouse, or from the image's index."""
    if wheelhouse:
        return (
            "# The wheels in ./wheels were resolved and downloaded on the build host, through its own package index,\n"
            "# proxy and certificates. This stage installs them offline (--no-index): it needs no network access and\n"
            "# no credentials, and none of the host's pip configuration is copied into the build. The libraries' own\n"
            "# test suites (tests/ folders, never imported by a served model) are removed to keep the image small.\n"
            "COPY requirements.txt /tmp/pyml/requirements.txt\n"
            "COPY wheels/ /tmp/pyml/wheels/\n"
            f"RUN python -m venv --without-pip {VENV_DIR} \\\n"
            f" && python -m pip --python {VENV_DIR}/bin/python install --no-index --no-cache-dir \\\n"
            "        --disable-pip-version-check --find-links /tmp/pyml/wheels \\\n"
            "        --requirement /tmp/pyml/requirements.txt \\\n"
            f"{_PRUNE_TESTS}"
        )
    return (
        "# No wheelhouse was rendered: this stage installs from the package index the base image's pip uses.\n"
        "# The libraries' own test suites (tests/ folders, never imported by a served model) are removed.\n"
        "COPY requirements.txt /tmp/pyml/requirements.txt\n"
        f"RUN python -m venv --without-pip {VENV_DIR} \\\n"
        f" && python -m pip --python {VENV_DIR}/bin/python install --no-cache-dir \\\n"
        "        --disable-pip-version-check --requirement /tmp/pyml/requirements.txt \\\n"
        f"{_PRUNE_TESTS}"
    )


def _per_version(labels: dict[str, str]) -> str:
    """The ENV and LABEL lines of one model version, rendered last (they change with every version)."""
    label_lines = " \\\n      ".join(f"{_quote(k)}={_quote(v)}" for k, v in labels.items())
    env_pairs = [(env, labels[label]) for label, env in _ENV_FROM_LABELS.items() if labels.get(label)]
    env_lines = " \\\n    ".join(f"{k}={_quote(v)}" for k, v in env_pairs)
    if not (env_lines or label_lines):
        return ""
    out = "\n# What this image serves. Kept last: these change with every model version.\n"
    if env_lines:
        out += f"ENV {env_lines}\n"
    if label_lines:
        out += f"LABEL {label_lines}\n"
    return out


def render_dockerfile(*, base_image: str, labels: dict[str, str], wheelhouse: bool = True) -> str:
    """The Dockerfile text. Pure: same arguments, same text."""
    title = ""
    if labels.get(L.MODEL):
        title = f' for model "{labels[L.MODEL]}"' + (f' version {labels[L.VERSION]}' if labels.get(L.VERSION) else "")
    install, per_version = _install_stage(wheelhouse), _per_version(labels)
    return f"""\
# Model serving image{title}, rendered by pyml_jupyter.
#
# Build it from this folder:   docker build -t IMAGE .
# Run it:                      docker run --rm -p 127.0.0.1:8080:8080 -p 127.0.0.1:8081:8081 IMAGE
# Then:                        curl http://127.0.0.1:8080/ping
#                              curl -X POST http://127.0.0.1:8080/invocations -H 'Content-Type: application/json' \\
#                                   -d '{{"dataframe_split": {{"columns": [...], "data": [[...]]}}}}'
#
# The final image contains:
#   {VENV_DIR}                        a Python virtual environment with requirements.txt installed
#   {RUNTIME_ROOT}/pyml_jupyter/serving   the serving runtime (starlette, uvicorn, pandas, numpy, grpcio; httptools
#                                     and uvloop when listed in requirements.txt)
#   {MODEL_DIR}                  the model package: pyml.json (contract), model.py, artifacts/
# and runs as the unprivileged user "pyml" (uid {USER_UID}), listening on port {CONTAINER_PORT} (HTTP) and
# {GRPC_CONTAINER_PORT} (gRPC, the Open Inference Protocol), with one worker process per CPU the container may use
# (docker run --cpus / --cpuset-cpus; set PYML_WORKERS=N to choose).

# ---- Stage 1: dependencies -------------------------------------------------------------------------------
# Only {VENV_DIR} leaves this stage: the wheels and requirements.txt stay behind. The venv is made without pip
# (the base image's pip, 22.3 or later, installs into it with --python): it holds only what requirements.txt lists.
FROM {base_image} AS dependencies
# Every image of this stage says what it is; the builder tags its result pyml-stages/dependencies:ID (shared
# by every model with the same requirements, kept for the layer cache), so none is left without a name.
LABEL "pyml.stage"="dependencies"
{install}
# ---- Stage 2: the served model ---------------------------------------------------------------------------
FROM {base_image}
LABEL "pyml.stage"="serving"

# Logs unbuffered, no .pyc written at run time (the venv's are compiled at install), the venv first on PATH,
# and the runtime importable from {RUNTIME_ROOT}.
ENV PYTHONDONTWRITEBYTECODE=1 \\
    PYTHONUNBUFFERED=1 \\
    PYTHONPATH={RUNTIME_ROOT} \\
    VIRTUAL_ENV={VENV_DIR} \\
    PATH={VENV_DIR}/bin:$PATH \\
    PYML_PACKAGE={MODEL_DIR} \\
    PYML_HOST=0.0.0.0 \\
    PYML_PORT={CONTAINER_PORT} \\
    PYML_GRPC_PORT={GRPC_CONTAINER_PORT} \\
    PYML_WORKERS=auto

# An unprivileged user to run the server; its files are read-only to it.
RUN useradd --uid {USER_UID} --user-group --create-home --home-dir /home/pyml --shell /usr/sbin/nologin pyml

# Dependencies (changes only when requirements.txt changes).
COPY --from=dependencies {VENV_DIR} {VENV_DIR}

# The serving runtime (changes with pyml_jupyter upgrades).
COPY runtime/ {RUNTIME_ROOT}/

USER {USER_UID}:{USER_UID}
WORKDIR /home/pyml
EXPOSE {CONTAINER_PORT} {GRPC_CONTAINER_PORT}
# Readiness probe without curl (not in slim images): the runtime answers GET /ping with 200 once the model loaded.
HEALTHCHECK --interval=10s --timeout=5s --start-period=60s --retries=3 \\
    CMD ["python", "-c", "import urllib.request as u; u.urlopen('http://127.0.0.1:{CONTAINER_PORT}/ping', timeout=4)"]
ENTRYPOINT ["python", "-m", "pyml_jupyter.serving", "{MODEL_DIR}", "--host", "0.0.0.0", "--port", "{CONTAINER_PORT}"]

# The model package (changes with every model version).
COPY model/ {MODEL_DIR}/
{per_version}"""


DOCKERIGNORE = """\
# Never send bytecode caches or editor litter to the engine.
**/__pycache__
**/*.pyc
**/*.pyo
**/.ipynb_checkpoints
**/.DS_Store
"""

_SKIP_DIRS = {"__pycache__", ".ipynb_checkpoints"}
_SKIP_SUFFIXES = {".pyc", ".pyo"}


def _copy_tree(src: Path, dst: Path) -> None:
    """Copy a folder, leaving out bytecode, and make everything world-readable (the image runs as non-root)."""
    dst.mkdir(parents=True, exist_ok=True)
    os.chmod(dst, 0o755)
    for entry in sorted(src.iterdir()):
        if entry.name in _SKIP_DIRS or entry.suffix in _SKIP_SUFFIXES or entry.name == ".DS_Store":
            continue
        target = dst / entry.name
        if entry.is_dir():
            _copy_tree(entry, target)
        elif entry.is_file():
            shutil.copyfile(entry, target)
            os.chmod(target, 0o755 if os.access(entry, os.X_OK) else 0o644)


def _link_or_copy(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)  # same filesystem: no bytes copied (the wheelhouse cache is read-only in practice)
    except OSError:
        shutil.copyfile(src, dst)


def _default_runtime_dir() -> Path:
    return Path(__file__).resolve().parent.parent / "serving"


def render_context(
    package_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    base_image: str | None = None,
    runtime_dir: str | os.PathLike | None = None,
    requirements: list[str] | None = None,
    labels: dict[str, str] | None = None,
    wheelhouse: str | os.PathLike | None = None,
) -> BuildContext:
    """Write a build context for ``package_dir`` into ``out_dir`` (created; must be empty or absent).

    ``requirements`` is the image's full requirement list (default: :func:`requirements_for` the package);
    ``wheelhouse`` a folder of wheels they resolve to (``None``: the image installs from its own index);
    ``runtime_dir`` the ``pyml_jupyter/serving`` folder to copy (default: this installation's);
    ``labels`` end up as ``LABEL`` lines (``pyml.model``, ``pyml.version`` and ``pyml.run_id`` also as the
    ``PYML_MODEL_NAME``, ``PYML_MODEL_VERSION`` and ``PYML_RUN_ID`` environment variables).
    """
    package = Path(package_dir)
    if not (package / CONTRACT_FILE).is_file():
        raise FileNotFoundError(f"{package} is not a pyml model package: it has no {CONTRACT_FILE}")
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()):
        raise FileExistsError(f"{out} is not empty: render a build context into a new folder")
    out.mkdir(parents=True, exist_ok=True)
    base_image = base_image or default_base_image()
    labels = {str(k): str(v) for k, v in (labels or {}).items()}
    requirements = merge_requirements(requirements) if requirements is not None else requirements_for(package)

    runtime = Path(runtime_dir) if runtime_dir is not None else _default_runtime_dir()
    if not (runtime / "__main__.py").is_file() and not (runtime / "__init__.py").is_file():
        raise FileNotFoundError(f"{runtime} is not the pyml_jupyter serving runtime")
    # Only the serving package: pyml_jupyter/ stays a namespace package in the image, without __init__.py,
    # so nothing else of pyml_jupyter (Jupyter, MLflow, Docker code) can be imported there.
    _copy_tree(runtime, out / "runtime" / "pyml_jupyter" / "serving")
    os.chmod(out / "runtime", 0o755)
    os.chmod(out / "runtime" / "pyml_jupyter", 0o755)
    _copy_tree(package, out / "model")

    (out / "requirements.txt").write_text(
        "# The model's pinned requirements, then the serving runtime's (pinned to the versions pyml_jupyter was\n"
        "# tested with) for distributions the model does not pin.\n" + "".join(f"{r}\n" for r in requirements)
    )
    if wheelhouse is not None:
        wheels = out / "wheels"
        wheels.mkdir()
        for wheel in sorted(Path(wheelhouse).iterdir()):
            if wheel.is_file() and wheel.suffix == ".whl":
                _link_or_copy(wheel, wheels / wheel.name)

    dockerfile = render_dockerfile(base_image=base_image, labels=labels, wheelhouse=wheelhouse is not None)
    (out / "Dockerfile").write_text(dockerfile)
    (out / ".dockerignore").write_text(DOCKERIGNORE)
    return BuildContext(path=out, dockerfile=dockerfile, base_image=base_image, requirements=requirements,
                        labels=labels, has_wheelhouse=wheelhouse is not None)
