"""Temporary folders that never outlive their process: removed on every path, and swept after a crash.

Each folder's name carries the id of the process that made it (``PREFIX<pid>-XXXX``). :func:`temporary`
removes it when the block ends, however it ends; a process killed meanwhile leaves it behind, and the next
:func:`make` of the same prefix removes the folders of processes that no longer run.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
import time
from pathlib import Path
from typing import Iterator

__all__ = ["make", "temporary", "sweep"]

MIN_AGE = 600.0  # seconds: a folder younger than this is never swept (its pid may have been reused)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def sweep(prefix: str, parent: str | Path | None = None, *, min_age: float = MIN_AGE) -> list[Path]:
    """Remove ``PREFIX<pid>-*`` folders in ``parent`` (default: the system's temp folder) whose process is gone."""
    root = Path(parent) if parent is not None else Path(tempfile.gettempdir())
    pattern = re.compile(re.escape(prefix) + r"(\d+)-")
    removed = []
    try:
        candidates = list(root.glob(f"{prefix}*"))
    except OSError:
        return removed
    now = time.time()
    for path in candidates:
        match = pattern.match(path.name)
        try:
            old = now - path.lstat().st_mtime > min_age
        except OSError:
            continue
        if match and old and not _alive(int(match.group(1))) and path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


def make(prefix: str, parent: str | Path | None = None) -> Path:
    """A new folder ``PREFIX<pid>-XXXX`` in ``parent``, after sweeping the ones crashed processes left there."""
    if parent is not None:
        Path(parent).mkdir(parents=True, exist_ok=True)
    sweep(prefix, parent)
    return Path(tempfile.mkdtemp(prefix=f"{prefix}{os.getpid()}-", dir=parent))


@contextlib.contextmanager
def temporary(prefix: str, parent: str | Path | None = None) -> Iterator[Path]:
    """A folder from :func:`make`, removed when the block ends (normally, by an exception, or by Ctrl-C)."""
    path = make(prefix, parent)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
