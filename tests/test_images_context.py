"""Rendering a build context: a pure function, tested without Docker."""

from __future__ import annotations

import re
import sys
from importlib import metadata
from pathlib import Path

import pytest

from pyml_jupyter.errors import BuildError, InvalidName
from pyml_jupyter.images.context import (
    default_base_image,
    merge_requirements,
    render_context,
    render_dockerfile,
    requirement_name,
    requirements_for,
    sanitize_name,
    sanitize_tag,
    sanitize_version,
)
from pyml_jupyter.images.wheelhouse import TargetPlatform, wheelhouse_key

LABELS = {"pyml.model": "churn", "pyml.version": "3", "pyml.run_id": "abc123", "pyml.managed": "true"}


@pytest.fixture
def wheelhouse(tmp_path: Path) -> Path:
    folder = tmp_path / "wheelhouse"
    folder.mkdir()
    (folder / "numpy-2.0.0-cp311-cp311-manylinux_2_17_x86_64.whl").write_bytes(b"not really a wheel")
    (folder / "wheelhouse.json").write_text("{}")
    return folder


@pytest.fixture
def context(example_package: Path, tmp_path: Path, wheelhouse: Path):
    (example_package / "__pycache__").mkdir()
    (example_package / "__pycache__" / "model.cpython-311.pyc").write_bytes(b"\0")
    return render_context(example_package, tmp_path / "ctx", base_image="python:3.11-slim", labels=LABELS,
                          wheelhouse=wheelhouse)


def instructions(dockerfile: str) -> list[str]:
    """The Dockerfile's instructions, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n\s*", " ", "\n".join(l for l in dockerfile.splitlines() if not l.lstrip().startswith("#")))
    return [" ".join(line.split()) for line in text.splitlines() if line.strip()]


# ------------------------------------------------------------------------------------------------ layout


def test_context_holds_dockerfile_requirements_runtime_package_and_wheels(context):
    root = context.path
    assert (root / "Dockerfile").read_text() == context.dockerfile
    assert (root / ".dockerignore").is_file()
    assert (root / "requirements.txt").is_file()
    assert (root / "model" / "pyml.json").is_file()
    assert (root / "model" / "artifacts" / "clf.joblib").is_file()
    assert (root / "runtime" / "pyml_jupyter" / "serving" / "loader.py").is_file()
    assert [p.name for p in (root / "wheels").iterdir()] == ["numpy-2.0.0-cp311-cp311-manylinux_2_17_x86_64.whl"]


def test_runtime_is_copied_alone_as_a_namespace_package(context):
    runtime = context.path / "runtime"
    assert [p.name for p in runtime.iterdir()] == ["pyml_jupyter"]
    assert [p.name for p in (runtime / "pyml_jupyter").iterdir()] == ["serving"]  # no pyml_jupyter/__init__.py
    assert not list(runtime.rglob("__pycache__")) and not list(runtime.rglob("*.pyc"))


def test_package_is_copied_without_bytecode(context):
    assert not (context.path / "model" / "__pycache__").exists()


def test_copied_files_are_world_readable_for_the_unprivileged_user(example_package, tmp_path):
    (example_package / "model.py").chmod(0o600)
    ctx = render_context(example_package, tmp_path / "ctx", base_image="python:3.11-slim", labels=LABELS,
                         wheelhouse=None)
    assert (ctx.path / "model" / "model.py").stat().st_mode & 0o777 == 0o644


def test_render_refuses_a_non_empty_folder(example_package, tmp_path):
    out = tmp_path / "ctx"
    out.mkdir()
    (out / "something").write_text("x")
    with pytest.raises(FileExistsError):
        render_context(example_package, out, base_image="python:3.11-slim")


def test_render_refuses_a_folder_that_is_not_a_package(tmp_path):
    with pytest.raises(FileNotFoundError, match="pyml.json"):
        render_context(tmp_path, tmp_path / "ctx", base_image="python:3.11-slim")


# ------------------------------------------------------------------------------------------------ Dockerfile


def test_layers_go_from_rarely_to_often_changing(context):
    steps = instructions(context.dockerfile)
    index = lambda prefix: next(i for i, s in enumerate(steps) if s.startswith(prefix))  # noqa: E731
    assert steps[0] == "FROM python:3.11-slim AS dependencies"
    final_from = steps.index("FROM python:3.11-slim")
    assert index("COPY requirements.txt") < index("COPY wheels/") < index("RUN python -m venv") < final_from
    assert (final_from < index("COPY --from=dependencies /opt/venv") < index("COPY runtime/")
            < index("COPY model/") < index('LABEL "pyml.model"'))
    assert steps[1] == 'LABEL "pyml.stage"="dependencies"' and steps[final_from + 1] == 'LABEL "pyml.stage"="serving"'
    # Nothing after the model package but per-version metadata: a new version reuses every earlier layer.
    assert all(s.split()[0] in ("ENV", "LABEL") for s in steps[index("COPY model/") + 1:])


def test_dependency_stage_installs_offline_without_cache(context):
    run = next(s for s in instructions(context.dockerfile) if s.startswith("RUN python -m venv"))
    assert "--no-index" in run and "--no-cache-dir" in run
    assert "--find-links /tmp/pyml/wheels" in run and "--requirement /tmp/pyml/requirements.txt" in run


def test_final_image_copies_only_the_venv_from_the_dependency_stage(context):
    steps = instructions(context.dockerfile)
    final = steps[steps.index("FROM python:3.11-slim"):]
    copies = [s for s in final if s.startswith("COPY")]
    assert copies == ["COPY --from=dependencies /opt/venv /opt/venv", "COPY runtime/ /opt/pyml/",
                      "COPY model/ /opt/pyml/model/"]
    assert not any("wheels" in s or "requirements.txt" in s for s in final)


def test_final_image_runs_unprivileged_with_healthcheck_and_entrypoint(context):
    steps = instructions(context.dockerfile)
    assert any(s.startswith("RUN useradd --uid 10001") for s in steps)
    assert "USER 10001:10001" in steps
    assert "EXPOSE 8080 8081" in steps
    health = next(s for s in steps if s.startswith("HEALTHCHECK"))
    assert "urllib.request" in health and "/ping" in health and "curl" not in health
    assert ('ENTRYPOINT ["python", "-m", "pyml_jupyter.serving", "/opt/pyml/model", "--host", "0.0.0.0", '
            '"--port", "8080"]') in steps
    env = next(s for s in steps if s.startswith("ENV PYTHONDONTWRITEBYTECODE"))
    for setting in ("PYTHONDONTWRITEBYTECODE=1", "PYTHONUNBUFFERED=1", "PYTHONPATH=/opt/pyml",
                    "PATH=/opt/venv/bin:$PATH", "PYML_GRPC_PORT=8081", "PYML_WORKERS=auto"):
        assert setting in env


def test_labels_and_model_identity_are_written_last(context):
    steps = instructions(context.dockerfile)
    assert steps[-1] == ('LABEL "pyml.model"="churn" "pyml.version"="3" "pyml.run_id"="abc123" '
                         '"pyml.managed"="true"')
    assert steps[-2] == 'ENV PYML_MODEL_NAME="churn" PYML_MODEL_VERSION="3" PYML_RUN_ID="abc123"'


def test_label_values_are_quoted_against_injection():
    text = render_dockerfile(base_image="python:3.11-slim", labels={"pyml.run_id": 'a"b $HOME\\'})
    assert 'LABEL "pyml.run_id"="a\\"b \\$HOME\\\\"' in text
    with pytest.raises(InvalidName):
        render_dockerfile(base_image="python:3.11-slim", labels={"pyml.run_id": "a\nRUN rm -rf /"})


def test_dockerfile_is_commented_for_a_reader(context):
    comments = [l for l in context.dockerfile.splitlines() if l.startswith("#")]
    assert len(comments) >= 15
    assert "docker build" in context.dockerfile and "/invocations" in context.dockerfile


def test_rendering_is_deterministic(example_package, tmp_path, wheelhouse):
    a = render_context(example_package, tmp_path / "a", base_image="python:3.11-slim", labels=LABELS,
                       wheelhouse=wheelhouse)
    b = render_context(example_package, tmp_path / "b", base_image="python:3.11-slim", labels=LABELS,
                       wheelhouse=wheelhouse)
    assert a.dockerfile == b.dockerfile
    assert (a.path / "requirements.txt").read_text() == (b.path / "requirements.txt").read_text()


def test_without_a_wheelhouse_the_image_installs_from_its_index(example_package, tmp_path):
    ctx = render_context(example_package, tmp_path / "ctx", base_image="python:3.11-slim", wheelhouse=None)
    assert not (ctx.path / "wheels").exists()
    assert "COPY wheels/" not in ctx.dockerfile and "--no-index" not in ctx.dockerfile
    assert "--no-cache-dir" in ctx.dockerfile


# ------------------------------------------------------------------------------------------------ secrets


def test_nothing_of_the_hosts_pip_configuration_is_copied(context):
    files = [p for p in context.path.rglob("*") if p.is_file()]
    names = {p.name for p in files}
    assert not names & {"pip.conf", "pip.ini", ".netrc", "ca-certificates.crt", ".pypirc"}
    assert not [p for p in files if p.suffix in (".crt", ".pem")]
    text = "\n".join(instructions(context.dockerfile))  # comments may explain; instructions must not do
    for forbidden in ("pip.conf", "PIP_", "cert", "--index-url", "--extra-index-url", "--trusted-host",
                      "proxy", "token", "ARG "):
        assert forbidden.lower() not in text.lower(), forbidden


def test_dockerignore_keeps_bytecode_out(context):
    ignore = (context.path / ".dockerignore").read_text()
    assert "**/__pycache__" in ignore and "**/*.pyc" in ignore


# ------------------------------------------------------------------------------------------------ requirements


def test_requirements_merge_the_models_pins_with_the_runtimes(example_package):
    reqs = requirements_for(example_package)
    names = [requirement_name(r) for r in reqs]
    assert len(names) == len(set(names))  # one line per distribution
    assert reqs[:4] == (example_package / "requirements.txt").read_text().split()
    for runtime in ("starlette", "uvicorn"):
        assert f"{runtime}=={metadata.version(runtime)}" in reqs  # pinned to what is installed here


def test_the_models_pin_wins_over_the_runtimes():
    merged = merge_requirements(["numpy==1.26.4", "Scikit_Learn==1.5.0"], ["numpy==2.1.0", "scikit-learn==1.6"])
    assert merged == ["numpy==1.26.4", "Scikit_Learn==1.5.0"]


def test_a_bare_name_gives_way_to_a_pin():
    assert merge_requirements(["pandas", "joblib"], ["pandas==2.2.3"]) == ["pandas==2.2.3", "joblib"]


def test_comments_and_blank_lines_are_dropped():
    assert merge_requirements(["# pinned", "", "numpy==2.0  # why", "  "]) == ["numpy==2.0"]


def test_index_options_in_a_package_are_refused(example_package):
    (example_package / "requirements.txt").write_text("--extra-index-url https://user:token@example.com\nnumpy\n")
    with pytest.raises(BuildError, match="only 'name==version'"):
        requirements_for(example_package)


def test_requirements_file_in_the_context(context):
    lines = [l for l in (context.path / "requirements.txt").read_text().splitlines() if not l.startswith("#")]
    assert lines == context.requirements
    assert "scikit-learn" in {requirement_name(l) for l in lines}


@pytest.mark.parametrize("line,name", [("Scikit_Learn>=1.0", "scikit-learn"), ("uvicorn[standard]==0.30", "uvicorn"),
                                       ("zope.interface==6; python_version>'3'", "zope-interface")])
def test_requirement_names_are_normalised(line, name):
    assert requirement_name(line) == name


# ------------------------------------------------------------------------------------------------ names


def test_default_base_image_matches_this_python():
    assert default_base_image() == f"python:{sys.version_info.major}.{sys.version_info.minor}-slim"


@pytest.mark.parametrize("name,version,tag", [
    ("churn", 3, "pyml/churn:3"),
    ("Churn-Model", "12", "pyml/churn-model:12"),
    ("fraud.v2_a", "1", "pyml/fraud.v2_a:1"),
    ("  spaced  ", "1", "pyml/spaced:1"),
])
def test_tags_are_lowercase_docker_references(name, version, tag):
    assert sanitize_tag(name, version) == tag


@pytest.mark.parametrize("name", ["", "my model", "a/b", "../etc", "a..b", "-lead", "trail-", "a:b", "naïve",
                                  "a;rm -rf", "x" * 101, "a__b"])
def test_unsafe_names_are_rejected_with_a_clear_message(name):
    with pytest.raises(InvalidName) as info:
        sanitize_name(name)
    assert "name" in info.value.message.lower()


def test_invalid_name_suggests_a_safe_one():
    with pytest.raises(InvalidName, match="'my-churn-model'"):
        sanitize_name("My Churn Model")


@pytest.mark.parametrize("version", ["", "-1", ".1", "1/2", "v 1", "a" * 129, None])
def test_unsafe_versions_are_rejected(version):
    with pytest.raises(InvalidName):
        sanitize_version(version)


# ------------------------------------------------------------------------------------------------ wheelhouse key


def test_linux_target_lists_every_manylinux_tag_up_to_its_glibc():
    target = TargetPlatform.for_linux("3.11.2", machine="x86_64", libc="glibc", libc_version="2.36")
    assert target.python_version == "3.11" and target.abi == "cp311"
    assert target.platforms[0] == "manylinux_2_36_x86_64"
    assert "manylinux_2_28_x86_64" in target.platforms and target.platforms[-1] == "manylinux2014_x86_64"
    args = target.pip_args()
    assert args[0] == "--only-binary=:all:" and args.count("--platform") == len(target.platforms)


def test_wheelhouse_key_depends_on_requirements_python_and_platform():
    t311 = TargetPlatform.for_linux("3.11", libc_version="2.36")
    t312 = TargetPlatform.for_linux("3.12", libc_version="2.36")
    key = wheelhouse_key(["numpy==2.0", "pandas==2.2"], t311)
    assert key == wheelhouse_key(["pandas==2.2", "numpy==2.0"], t311)  # order does not matter
    assert key != wheelhouse_key(["numpy==2.1", "pandas==2.2"], t311)
    assert key != wheelhouse_key(["numpy==2.0", "pandas==2.2"], t312)
    assert key != wheelhouse_key(["numpy==2.0", "pandas==2.2"], TargetPlatform.for_linux("3.11", libc_version="2.28"))
