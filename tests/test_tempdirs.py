"""Temporary folders: removed on every path, and what a killed process left behind is swept next time."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from pyml_jupyter import tempdirs


def dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def aged(path, seconds: float = 3600):
    path.mkdir()
    old = time.time() - seconds
    os.utime(path, (old, old))
    return path


def test_a_temporary_folder_is_removed_when_its_block_ends_normally_or_not(tmp_path):
    with tempdirs.temporary("pyml-t-", tmp_path) as folder:
        (folder / "file").write_text("x")
    assert not folder.exists()
    with pytest.raises(KeyboardInterrupt):
        with tempdirs.temporary("pyml-t-", tmp_path) as folder:
            raise KeyboardInterrupt
    assert not folder.exists()


def test_folders_of_processes_that_no_longer_run_are_swept_by_the_next_one(tmp_path):
    crashed = aged(tmp_path / f"pyml-t-{dead_pid()}-abc")
    running = aged(tmp_path / f"pyml-t-{os.getpid()}-def")
    young = tmp_path / f"pyml-t-{dead_pid()}-ghi"
    young.mkdir()
    other = aged(tmp_path / "unrelated")

    made = tempdirs.make("pyml-t-", tmp_path)

    assert not crashed.exists()
    assert running.exists() and young.exists() and other.exists() and made.exists()
    assert made.name.startswith(f"pyml-t-{os.getpid()}-")
