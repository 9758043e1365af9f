"""Building model images with a REAL Docker engine (skipped without one, failed under CI=true)."""

from __future__ import annotations

import hashlib
import re
import time
from pathlib import Path

import pytest

from docker_fixtures import (  # noqa: F401 - fixtures are used by name
    BASE_IMAGE,
    built,
    copy_package,
    docker_engine,
    model_name,
    pyml_cache,
    session_package,
)
from pyml_jupyter.errors import BuildError, InvalidName
from pyml_jupyter.images.builder import build_context, build_image, find_image, list_images
from pyml_jupyter.images.context import render_context
from pyml_jupyter.serving.loader import package_digest

pytestmark = pytest.mark.docker

HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")


def run_in_image(client, image: str, script: str) -> str:
    """Run a shell script in a throwaway container of ``image`` (entrypoint replaced), as the image's user."""
    out = client.containers.run(image, ["-c", script], entrypoint=["sh"], remove=True, network_disabled=True)
    return out.decode()


# ------------------------------------------------------------------------------------------------ building


def test_build_returns_the_image_with_its_labels(built, docker_engine):
    package, info, _ = built
    assert info.tag == f"pyml/{model_name()}:1"
    assert info.image_id.startswith("sha256:") and info.size_bytes > 0
    assert info.labels["pyml.model"] == model_name() and info.labels["pyml.version"] == "1"
    assert info.labels["pyml.run_id"] == "run-1" and info.labels["pyml.managed"] == "true"
    assert info.labels["pyml.digest"] == package_digest(package)
    image = docker_engine.images.get(info.tag)
    assert image.id == info.image_id and image.labels["pyml.digest"] == info.digest


def test_build_reports_its_stages_and_streams_the_engine_log(built):
    _, info, progress = built
    assert progress.stages == ["resolving dependencies", "building image", "done"]
    log = progress.tail(2000)
    assert any(line.startswith("Step 1/") for line in log)
    assert any("Successfully tagged" in line for line in log)
    assert info.total_steps > 0 and info.log_tail


def test_find_image_asks_the_engine_by_label(built):
    _, info, _ = built
    found = find_image(model_name(), "1")
    assert found is not None and found.image_id == info.image_id and found.tag == info.tag
    assert find_image(model_name(), "999") is None
    assert info.image_id in {i.image_id for i in list_images(model_name())}


def test_find_image_matches_the_run_store_and_package_not_only_name_and_version(built):
    package, info, _ = built
    assert find_image(model_name(), "1", run_id="run-1", digest=package_digest(package)).image_id == info.image_id
    assert find_image(model_name(), "1", run_id="run-2") is None  # the model was deleted and registered again
    assert find_image(model_name(), "1", run_id="run-1", store="another-store") is None
    assert find_image(model_name(), "1", digest="sha256:" + "0" * 64) is None
    assert find_image(model_name().upper(), "1") is None  # names are matched exactly


def test_the_image_is_also_tagged_with_its_run_so_it_never_dangles(built, docker_engine):
    _, info, _ = built
    assert f"pyml/{model_name()}:1-run-1" in docker_engine.images.get(info.image_id).tags


def test_image_runs_as_an_unprivileged_user(built, docker_engine):
    _, info, _ = built
    config = docker_engine.api.inspect_image(info.image_id)["Config"]
    assert config["User"] == "10001:10001"
    assert run_in_image(docker_engine, info.tag, "id -u").strip() == "10001"


def test_image_metadata_is_complete(built, docker_engine):
    _, info, _ = built
    config = docker_engine.api.inspect_image(info.image_id)["Config"]
    assert config["Entrypoint"] == ["python", "-m", "pyml_jupyter.serving", "/opt/pyml/model", "--host", "0.0.0.0",
                                    "--port", "8080"]
    assert {"8080/tcp", "8081/tcp"} <= set(config["ExposedPorts"])
    assert "/ping" in " ".join(config["Healthcheck"]["Test"])
    env = dict(item.split("=", 1) for item in config["Env"])
    assert env["PYTHONDONTWRITEBYTECODE"] == "1" and env["PYTHONUNBUFFERED"] == "1"
    assert env["PYTHONPATH"] == "/opt/pyml" and env["PATH"].startswith("/opt/venv/bin:")
    assert env["PYML_MODEL_NAME"] == model_name() and env["PYML_MODEL_VERSION"] == "1"


def test_image_holds_the_runtime_alone_and_the_package(built, docker_engine):
    _, info, _ = built
    out = run_in_image(docker_engine, info.tag, "ls /opt/pyml; echo --; ls /opt/pyml/pyml_jupyter; echo --; "
                                                 "ls /opt/pyml/model; python -c 'import sklearn, starlette, uvicorn'")
    top, pkg, model = (part.split() for part in out.split("--"))
    assert top == ["model", "pyml_jupyter"]
    assert pkg == ["serving"]  # no pyml_jupyter/__init__.py: nothing but the runtime is importable
    assert {"pyml.json", "model.py", "artifacts", "requirements.txt"} <= set(model)


# ------------------------------------------------------------------------------------------------ no host secrets


def test_image_holds_no_pip_configuration_wheelhouse_or_cache(built, docker_engine):
    _, info, _ = built
    script = (
        "find / -xdev \\( -name pip.conf -o -name pip.ini -o -name .netrc -o -name .pypirc -o -name '*.whl' "
        "-o -path '*/.cache/pip' -o -path '*/pip/http*' \\) -print 2>/dev/null; "
        "ls -d /tmp/pyml /wheels /root/.cache /home/pyml/.cache 2>/dev/null; "
        "ls /opt/venv/lib/python3*/site-packages | grep -i '^pip$' ; true"
    )
    found = set(run_in_image(docker_engine, info.tag, script).split())
    in_base = set(run_in_image(docker_engine, BASE_IMAGE, script).split())  # e.g. Debian's ensurepip wheels
    assert found - in_base == set()


def test_image_holds_no_copy_of_the_hosts_ca_bundle(built, docker_engine):
    _, info, _ = built
    if not HOST_CA_BUNDLE.is_file():
        pytest.skip("this host has no CA bundle")
    host_bundle = HOST_CA_BUNDLE.read_bytes()
    host_sum = hashlib.sha256(host_bundle).hexdigest()
    sums = run_in_image(docker_engine, info.tag,
                        "find / -xdev -type f \\( -name '*.crt' -o -name '*.pem' \\) -exec sha256sum {} + "
                        "2>/dev/null; true")
    assert host_sum not in sums
    # Certificates the host trusts beyond Debian's (a TLS-inspecting proxy's CA) are nowhere in the image's bundle.
    image_bundle = run_in_image(docker_engine, info.tag, "cat /etc/ssl/certs/ca-certificates.crt 2>/dev/null; true")
    pem = re.compile(r"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----", re.S)
    blocks = lambda text: set(pem.findall(text))  # noqa: E731
    base_bundle = run_in_image(docker_engine, BASE_IMAGE, "cat /etc/ssl/certs/ca-certificates.crt 2>/dev/null; true")
    host_only = blocks(host_bundle.decode("ascii", "replace")) - blocks(base_bundle)
    assert not host_only & blocks(image_bundle)


def test_image_history_and_environment_carry_no_pip_proxy_or_token_settings(built, docker_engine):
    _, info, _ = built
    history = " ".join(layer.get("CreatedBy", "") for layer in docker_engine.api.history(info.image_id))
    env = docker_engine.api.inspect_image(info.image_id)["Config"]["Env"]
    for text in (history, " ".join(env)):
        for forbidden in ("PIP_", "pip.conf", "proxy", "PROXY", "token", "TOKEN", "ca-certificates.crt", "--cert",
                          "--index-url", "--extra-index-url", "--trusted-host", *host_pip_locations()):
            assert forbidden not in text, forbidden


def host_pip_locations() -> list[str]:
    """The indexes and wheel folders the host's pip is configured with (none of which may reach the image)."""
    import subprocess
    import sys

    listing = subprocess.run([sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True).stdout
    keys = ("find-links", "index-url", "extra-index-url")
    values = [line.split("=", 1)[1].strip("'\" ") for line in listing.splitlines()
              if "=" in line and line.split("=", 1)[0].rsplit(".", 1)[-1] in keys]
    return [location for value in values for location in value.split() if location]


# ------------------------------------------------------------------------------------------------ rebuilds


def test_new_version_with_unchanged_requirements_reuses_the_dependency_layers(built, docker_engine, tmp_path):
    package, first, _ = built
    second = copy_package(package, tmp_path / "v2")
    (second / "model.py").write_text((second / "model.py").read_text() + "\n# version 2: a comment changed\n")
    from pyml_jupyter.progress import Progress

    progress = Progress("rebuild")
    started = time.perf_counter()
    info = build_image(second, name=model_name(), version=2, run_id="run-2", base_image=BASE_IMAGE,
                       progress=progress, client=docker_engine)
    seconds = time.perf_counter() - started
    log = progress.tail(2000)
    cached_after = lambda prefix: log[next(i for i, l in enumerate(log) if prefix in l) + 1].strip()  # noqa: E731
    assert cached_after("RUN python -m venv") == "---> Using cache"
    assert cached_after("COPY --from=dependencies") == "---> Using cache"
    assert info.labels["pyml.digest"] != first.labels["pyml.digest"]
    layers = lambda image_id: docker_engine.api.inspect_image(image_id)["RootFS"]["Layers"]  # noqa: E731
    old, new = layers(first.image_id), layers(info.image_id)
    shared = len(layers(BASE_IMAGE)) + 2  # the base image's, the user's and the venv's layers
    assert new[:shared] == old[:shared]  # the same layers, not copies: nothing to push or pull again
    assert new[-1] != old[-1]  # the model package's layer is new
    assert seconds < 4.0, f"a rebuild with unchanged requirements took {seconds:.1f}s"
    print(f"\nrebuild of a new version: {seconds:.2f}s; image {info.size_bytes / 1e6:.0f} MB")


# ------------------------------------------------------------------------------------------------ failures


def test_unresolvable_requirement_raises_build_error_with_pips_log(built, docker_engine, tmp_path):
    package = copy_package(built[0], tmp_path / "bad")
    (package / "requirements.txt").write_text("numpy==0.0.1\n")  # no such release: pip cannot resolve it
    with pytest.raises(BuildError) as info:
        build_image(package, name=model_name("unresolvable"), version=1, base_image=BASE_IMAGE,
                    client=docker_engine)
    message = info.value.message
    assert "resolving dependencies" in message and "numpy==0.0.1" in message
    assert "No matching distribution" in message or "Could not find a version" in message
    assert info.value.details["log"]


def test_failing_docker_step_raises_build_error_with_the_step_and_its_log(built, docker_engine, tmp_path):
    empty = tmp_path / "empty-wheelhouse"
    empty.mkdir()
    context = render_context(built[0], tmp_path / "ctx", base_image=BASE_IMAGE, requirements=["numpy==2.0.0"],
                             labels={"pyml.managed": "true", "pyml.model": model_name("broken")}, wheelhouse=empty)
    with pytest.raises(BuildError) as info:
        build_context(context, tag=f"pyml/{model_name('broken')}:1", client=docker_engine)
    message = info.value.message
    assert "at step `RUN python -m venv" in message
    assert "numpy==2.0.0" in message and "Last lines of the build log" in message
    assert len(info.value.details["log"]) <= 20
    assert not docker_engine.containers.list(all=True, filters={"status": "exited",
                                                                "ancestor": BASE_IMAGE})  # forcerm


def image_ids(log: list[str]) -> list[str]:
    """The image ids a build log names (`` ---> 0123456789ab``), in order."""
    return [m.group(1) for line in log if (m := re.match(r"^\s*---> ([0-9a-f]{12})\s*$", line))]


def dangling(client, ids: list[str]) -> list[str]:
    """Those of ``ids`` that are untagged top-level images now."""
    now = {image.short_id.split(":")[-1][:12] for image in client.images.list(filters={"dangling": True})}
    return [image_id for image_id in ids if image_id in now]


def test_a_build_failing_mid_way_leaves_no_untagged_image(built, docker_engine, tmp_path):
    from pyml_jupyter.progress import Progress

    empty = tmp_path / "empty-wheelhouse"
    empty.mkdir()
    context = render_context(built[0], tmp_path / "ctx", base_image=BASE_IMAGE, requirements=["numpy==2.0.1"],
                             labels={"pyml.managed": "true", "pyml.model": model_name("half")}, wheelhouse=empty)
    (context.path / "requirements.txt").write_text(f"numpy==2.0.1\n# {time.time()}\n")  # never from the cache
    progress = Progress("build")
    with pytest.raises(BuildError):
        build_context(context, tag=f"pyml/{model_name('half')}:1", client=docker_engine, progress=progress)
    made = image_ids(progress.tail(2000))
    assert len(made) >= 2  # the base image, then the unique requirements layer
    assert dangling(docker_engine, made) == []


def test_the_dependency_stage_is_named_not_dangling(built, docker_engine):
    log = built[2].tail(2000)
    second_from = max(i for i, line in enumerate(log) if re.match(r"^Step \d+/\d+ : FROM ", line))
    stage_result = image_ids(log[:second_from])[-1]
    tags = docker_engine.images.get(stage_result).tags
    assert f"pyml-stages/dependencies:{stage_result}" in tags
    assert dangling(docker_engine, image_ids(log)) == []


def test_a_rebuild_of_a_version_leaves_no_untagged_image_behind(built, docker_engine, tmp_path):
    from pyml_jupyter.progress import Progress

    package = copy_package(built[0], tmp_path / "rebuilt")
    name = model_name("rebuilt")
    first = build_image(package, name=name, version="1", base_image=BASE_IMAGE, client=docker_engine)
    (package / "model.py").write_text((package / "model.py").read_text() + f"\n# changed {time.time()}\n")
    progress = Progress("rebuild")
    second = build_image(package, name=name, version="1", base_image=BASE_IMAGE, client=docker_engine,
                         progress=progress)
    assert second.image_id != first.image_id
    assert dangling(docker_engine, [first.short_id, *image_ids(progress.tail(2000))]) == []


def test_prune_keeps_the_newest_images_and_any_a_container_uses(built, docker_engine, tmp_path):
    from pyml_jupyter.deployments import run_deployment, stop_deployment
    from pyml_jupyter.images.builder import prune_images

    name = model_name("pruned")
    images = []
    for version in ("1", "2", "3", "4"):
        package = copy_package(built[0], tmp_path / version)
        (package / "model.py").write_text((package / "model.py").read_text() + f"\n# v{version}\n")
        images.append(build_image(package, name=name, version=version, run_id=f"run-{version}",
                                  base_image=BASE_IMAGE, client=docker_engine))
    run_deployment(images[0], name=name, version="1", client=docker_engine)
    try:
        removed = prune_images(name, keep=2, client=docker_engine)
        assert [image.image_id for image in removed] == [images[1].image_id]  # v1 runs: kept
        left = {image.image_id for image in list_images(name, client=docker_engine)}
        assert left == {images[0].image_id, images[2].image_id, images[3].image_id}
    finally:
        stop_deployment(name, client=docker_engine)
    assert [i.image_id for i in prune_images(name, keep=0, client=docker_engine)] == [images[3].image_id,
                                                                                       images[2].image_id,
                                                                                       images[0].image_id]
    with pytest.raises(Exception, match="keep must be"):
        prune_images(name, keep=-1, client=docker_engine)


def test_missing_engine_raises_a_clear_build_error(session_package, monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    with pytest.raises(BuildError, match="Docker engine not reachable: start dockerd or set DOCKER_HOST"):
        build_image(session_package, name="anything", version=1)


def test_invalid_name_is_rejected_before_any_work(session_package):
    with pytest.raises(InvalidName):
        build_image(session_package, name="not a name", version=1, client=object())
