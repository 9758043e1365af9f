"""One lock per registered version: builds and deploys of one version take turns, across threads and processes."""

from __future__ import annotations

import subprocess
import sys
import threading
import time

from pyml_jupyter.locks import version_lock


def test_two_threads_holding_one_version_take_turns_and_other_versions_do_not_wait(tmp_path, monkeypatch):
    monkeypatch.setenv("PYML_CACHE_DIR", str(tmp_path))
    inside, overlaps = [], []

    def hold(version):
        with version_lock("store", "churn", version):
            inside.append(version)
            if inside.count(3) > 1:
                overlaps.append(version)
            time.sleep(0.3)
            inside.remove(version)

    threads = [threading.Thread(target=hold, args=(v,)) for v in (3, 3, 4)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert overlaps == []
    assert 0.55 < time.perf_counter() - started < 1.5  # the two v3 holders in turn, v4 beside them


def test_the_same_thread_may_take_it_again_so_deploy_can_build(tmp_path, monkeypatch):
    monkeypatch.setenv("PYML_CACHE_DIR", str(tmp_path))
    with version_lock("store", "churn", 3):
        with version_lock("store", "churn", 3):
            pass


def test_another_process_waits_for_the_holder(tmp_path, monkeypatch):
    import os

    monkeypatch.setenv("PYML_CACHE_DIR", str(tmp_path))
    script = ("import sys, time; from pyml_jupyter.locks import version_lock\n"
              "print('ready', flush=True); t = time.perf_counter()\n"
              "with version_lock('store', 'churn', 3): print(round(time.perf_counter() - t, 2), flush=True)\n")
    with version_lock("store", "churn", 3):
        other = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True,
                                 env={**os.environ, "PYML_CACHE_DIR": str(tmp_path)})
        assert other.stdout.readline().strip() == "ready"
        time.sleep(1.0)
    waited = float(other.communicate(timeout=60)[0])
    assert waited > 0.7
