"""One lock per registered version, so that building and deploying the same version never run at once.

:func:`version_lock` serializes the threads of this process (an ``RLock`` per version, so ``deploy`` may call
``build`` while it holds it) and the processes of this machine (a ``flock`` on a file in the cache, taken by the
outermost holder only): a kernel and the Jupyter server deploying ``churn/3`` at the same moment take turns.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import threading
from pathlib import Path
from typing import Iterator

__all__ = ["version_lock"]

_guard = threading.Lock()
_locks: dict[str, threading.RLock] = {}
_depth = threading.local()


def _lock_dir() -> Path:
    root = Path(os.environ.get("PYML_CACHE_DIR", Path.home() / ".cache" / "pyml_jupyter")) / "locks"
    root.mkdir(parents=True, exist_ok=True)
    return root


@contextlib.contextmanager
def version_lock(store: str, name: str, version: int | str) -> Iterator[None]:
    """Hold the lock of ``name/version`` in ``store`` (blocking until other holders are done)."""
    key = hashlib.sha256(f"{store}\0{name}\0{version}".encode()).hexdigest()[:24]
    with _guard:
        lock = _locks.setdefault(key, threading.RLock())
    with lock:
        depths = _depth.__dict__.setdefault("depths", {})
        depths[key] = depths.get(key, 0) + 1
        handle = None
        try:
            if depths[key] == 1:
                handle = open(_lock_dir() / f"{key}.lock", "a+")
                fcntl.flock(handle, fcntl.LOCK_EX)
            yield
        finally:
            depths[key] -= 1
            if handle is not None:
                fcntl.flock(handle, fcntl.LOCK_UN)
                handle.close()
