"""Core work in a child process, for the Jupyter server: it never imports a user's model nor hosts a JVM.

:func:`run_cli` runs ``python -m pyml_jupyter.cli ARGS --json`` (the same core call the terminal makes),
replays the child's progress events into the job's :class:`~pyml_jupyter.progress.Progress`, and returns the
JSON result, or raises the child's :class:`~pyml_jupyter.errors.PymlError` with its own code and status.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from typing import Any

from .errors import PymlError
from .progress import Progress

__all__ = ["run_cli", "WorkerError"]


class WorkerError(PymlError):
    """The child process ended without an answer (killed, crashed)."""

    status = 500
    code = "worker_error"


def run_cli(args: list[str], progress: Progress, *, timeout: float = 3600.0) -> Any:
    """The JSON answer of ``pyml ARGS --json`` run in a child process, its progress replayed into ``progress``."""
    argv = [sys.executable, "-m", "pyml_jupyter.cli", *args, "--json"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    tail: list[str] = []

    def pump() -> None:
        assert process.stderr is not None
        for line in process.stderr:
            line = line.rstrip("\n")
            progress.replay(line)
            tail[:] = [*tail[-19:], line]

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    timed_out = threading.Event()

    def stop() -> None:
        timed_out.set()
        process.kill()

    timer = threading.Timer(timeout, stop)  # stderr is the reader's: no communicate() here
    timer.start()
    try:
        assert process.stdout is not None
        out = process.stdout.read()
        process.wait()
    finally:
        timer.cancel()
    reader.join(timeout=5)
    if timed_out.is_set():
        raise WorkerError(f"pyml {args[0]} did not finish within {timeout:.0f} s and was stopped.")
    try:
        answer = json.loads(out.strip().splitlines()[-1]) if out.strip() else None
    except ValueError:
        answer = None
    if isinstance(answer, dict) and process.returncode == 2 and "error" in answer:
        raise PymlError.from_dict(answer, status=answer.get("status"))
    if answer is None or process.returncode not in (0, 1):
        last = "\n".join(line for line in tail if not line.startswith("PYML-PROGRESS"))[-2000:]
        raise WorkerError(f"pyml {args[0]} ended with exit code {process.returncode} and no answer. "
                          f"Last lines:\n{last}")
    return answer
