"""Free loopback ports and the serving runtime in a child process, for tests that need a real server."""

from __future__ import annotations

import contextlib
import http.client
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(port: int, process: subprocess.Popen, timeout: float = 90) -> None:
    """Wait until ``GET /ping`` on ``port`` answers 200; fail with the server's output if it exits first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"the server exited with {process.returncode}: {process.stdout.read()}")
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            c.request("GET", "/ping")
            if c.getresponse().status == 200:
                return
        except OSError:
            time.sleep(0.2)
    raise AssertionError("the server did not become ready")


def stop(process: subprocess.Popen, timeout: float = 30) -> None:
    """Terminate ``process`` (if it still runs) and reap it; kill it if it outlives ``timeout``."""
    if process.poll() is None:
        process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@dataclass(frozen=True)
class Server:
    """A running ``python -m pyml_jupyter.serving``: its HTTP port and its process."""

    port: int
    process: subprocess.Popen


@contextlib.contextmanager
def running(command: list[str], port: int, *, env: dict[str, str] | None = None, cwd: Path | None = None,
            new_session: bool = False) -> Iterator[Server]:
    """Run ``command``, a server that listens on ``port``, until ``GET /ping`` answers; stop it after.

    ``new_session`` puts the server in a process group of its own, for tests that signal the whole group.
    """
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=cwd,
                               env=dict(os.environ) if env is None else env, start_new_session=new_session)
    try:
        wait_ready(port, process)
        yield Server(port, process)
    finally:
        stop(process)


@contextlib.contextmanager
def serving(package: Path, *args: str, env: dict[str, str] | None = None,
            new_session: bool = False) -> Iterator[Server]:
    """Run the serving runtime on ``package`` with command-line ``args`` on a free port (see :func:`running`)."""
    port = free_port()
    command = [sys.executable, "-m", "pyml_jupyter.serving", str(package), "--port", str(port), *args]
    with running(command, port, env=env, new_session=new_session) as server:
        yield server
