"""A real image registry for the push tests: Debian's ``docker-registry`` (the Distribution registry).

``image_registry`` serves one on ``127.0.0.1:<free port>`` for the session (the Docker engine treats loopback
registries as insecure, so plain HTTP works without engine configuration) and stops it at the end;
``readonly_registry`` serves one in read-only maintenance mode, which refuses every push. Without the
``docker-registry`` command the tests are skipped, and under CI=true they fail (scripts/system-deps.sh
installs it).
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from conftest import IN_CI
from processes import free_port, stop

START_TIMEOUT = 30.0


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except urllib.error.HTTPError as exc:
        return exc.code == 401
    except OSError:
        return False


def _config(root: Path, port: int, readonly: bool) -> Path:
    maintenance = "  maintenance:\n    readonly:\n      enabled: true\n" if readonly else ""
    config = root / "config.yml"
    config.write_text(
        "version: 0.1\n"
        "log:\n  level: warn\n"
        f"storage:\n  filesystem:\n    rootdirectory: {root / 'data'}\n  delete:\n    enabled: true\n{maintenance}"
        f"http:\n  addr: 127.0.0.1:{port}\n"
    )
    return config


@contextlib.contextmanager
def serve_registry(root: Path, *, readonly: bool = False):
    """Run ``docker-registry serve`` on a free loopback port; yields ``127.0.0.1:PORT``."""
    command = shutil.which("docker-registry")
    if command is None:
        message = "the `docker-registry` command is missing: apt-get install docker-registry (scripts/system-deps.sh)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    port = free_port()
    log = open(root / "registry.log", "wb")
    process = subprocess.Popen([command, "serve", str(_config(root, port, readonly))], stdout=log,
                               stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while not _answers(f"http://127.0.0.1:{port}/v2/"):
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"docker-registry did not start on 127.0.0.1:{port}:\n"
                            f"{(root / 'registry.log').read_text(errors='replace')[-2000:]}")
            time.sleep(0.2)
        yield f"127.0.0.1:{port}"
    finally:
        stop(process, timeout=15)
        log.close()


@pytest.fixture(scope="session")
def image_registry(tmp_path_factory):
    """``127.0.0.1:PORT`` of a real registry that accepts pushes."""
    with serve_registry(tmp_path_factory.mktemp("registry")) as address:
        yield address


@pytest.fixture(scope="session")
def readonly_registry(tmp_path_factory):
    """``127.0.0.1:PORT`` of a real registry that refuses every push (read-only maintenance mode)."""
    with serve_registry(tmp_path_factory.mktemp("registry-readonly"), readonly=True) as address:
        yield address
