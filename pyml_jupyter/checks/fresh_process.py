"""The package loaded in a new interpreter: proof that it needs nothing of the notebook's state."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from .. import tempdirs

__all__ = ["FreshProcess", "TARGET"]

TARGET = "fresh process"
"""The parity target the check compares the notebook's prediction with."""


def _clean_env() -> dict[str, str]:
    """This environment minus the notebook's import state; this pyml_jupyter stays importable."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONSTARTUP")}
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[2])  # the folder holding the pyml_jupyter in use
    return env


class FreshProcess:
    """The package loaded in a new interpreter, in an empty directory, predicting its sample (or ``sample``).

    Started at construction and awaited by :meth:`result`, so that the check's work in this process goes on
    while the new interpreter starts and imports the model's libraries.
    """

    def __init__(self, package_dir: Path, timeout: float, sample: Any = None, *,
                 module: str = "pyml_jupyter.serving.offline") -> None:
        """``module`` is run as ``python -m MODULE PACKAGE OUT [--sample IN]`` (the Spark scorer takes the same)."""
        tempdirs.sweep("pyml-fresh-")  # what a killed kernel left behind
        self._cwd = tempfile.TemporaryDirectory(prefix=f"pyml-fresh-{os.getpid()}-")
        self._out = Path(self._cwd.name) / "prediction.pkl"
        self._timeout = timeout
        self.max_rss_bytes = 0
        self.timings: dict[str, float] = {}
        command = [sys.executable, "-m", module, str(Path(package_dir).resolve()), str(self._out)]
        if sample is not None:  # another input than the package's stored sample
            with open(Path(self._cwd.name) / "sample.pkl", "wb") as f:
                pickle.dump(sample, f)
            command += ["--sample", str(Path(self._cwd.name) / "sample.pkl")]
        self._started = time.perf_counter()
        self._process = subprocess.Popen(
            command,
            cwd=self._cwd.name, env=_clean_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )
        self._stderr, self._elapsed, self._timed_out = "", 0.0, False
        self._waiter = threading.Thread(target=self._wait, daemon=True)
        self._waiter.start()

    def _wait(self) -> None:
        try:
            _, self._stderr = self._process.communicate(timeout=self._timeout)
        except subprocess.TimeoutExpired:
            self._timed_out = True
            self._process.kill()
            _, self._stderr = self._process.communicate()
        self._elapsed = time.perf_counter() - self._started

    def result(self) -> tuple[Any, float]:
        """The prediction and the seconds the new process took; raises ``RuntimeError`` saying why it failed."""
        try:
            self._waiter.join()
            if self._timed_out:
                raise RuntimeError(f"no prediction within {self._timeout:.0f} s")
            if self._process.returncode != 0:
                tail = "\n".join((self._stderr or "").strip().splitlines()[-6:])
                raise RuntimeError(tail or f"exit code {self._process.returncode}")
            with open(self._out, "rb") as f:
                written = pickle.load(f)
            self.max_rss_bytes = int(written.get("max_rss_bytes", 0))
            self.timings = {k: v for k, v in written.items() if k.endswith("_s")}
            return written["prediction"], self._elapsed
        finally:
            self.close()

    def close(self) -> None:
        if self._process.poll() is None:
            self._process.kill()
            self._waiter.join()
        self._cwd.cleanup()
