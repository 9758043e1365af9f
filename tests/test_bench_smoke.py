"""Every benchmark script runs from a clean clone: each one's ``--smoke`` mode (a second or two of load) exits 0.

The full runs take minutes and are run by hand (bench/README.md); these keep them from rotting. Each script is
run as a user runs it, as a subprocess of this interpreter from the repository root. They all start together
(most of their time is waiting on subprocesses, Docker and Spark), so the module takes about as long as the
slowest one.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from docker_fixtures import docker_engine  # noqa: F401
from spark_fixtures import require_spark

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "bench").glob("*/bench_*.py"))
TIMEOUT = 480


class Smoke:
    """``python SCRIPT --smoke`` started in the background; ``result()`` waits for it."""

    def __init__(self, script: str) -> None:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
        env.pop("MLFLOW_TRACKING_URI", None)  # each script makes a store of its own
        self.script, self.started = script, time.monotonic()
        self.output = tempfile.TemporaryFile(mode="w+")
        self.process = subprocess.Popen([sys.executable, script, "--smoke"], cwd=ROOT, env=env, stdout=self.output,
                                        stderr=subprocess.STDOUT, text=True)

    def result(self) -> str:
        try:
            code = self.process.wait(timeout=max(1.0, TIMEOUT - (time.monotonic() - self.started)))
        except subprocess.TimeoutExpired:
            self.process.kill()
            code = self.process.wait()
        self.output.seek(0)
        text = self.output.read()
        print(f"{self.script} --smoke: exit {code} after {time.monotonic() - self.started:.1f} s")
        assert code == 0, f"{self.script} --smoke exited {code}:\n{text[-6000:]}"
        return text


@pytest.fixture(scope="module")
def smoke(docker_engine):  # noqa: F811 - the build benchmark needs the engine and the base image
    require_spark()
    runs = {script: Smoke(script) for script in SCRIPTS}
    yield runs
    for run in runs.values():
        if run.process.poll() is None:
            run.process.kill()
            run.process.wait()


def test_every_benchmark_script_has_a_smoke_mode():
    assert len(SCRIPTS) >= 5
    for script in SCRIPTS:
        assert '"--smoke"' in (ROOT / script).read_text(), f"{script} has no --smoke mode"


def test_no_benchmark_file_is_ignored_by_git():
    files = [p.relative_to(ROOT).as_posix() for p in (ROOT / "bench").rglob("*.py") if "__pycache__" not in p.parts]
    done = subprocess.run(["git", "check-ignore", "--no-index", *files], cwd=ROOT, capture_output=True, text=True)
    assert done.stdout.strip() == "", f"ignored by .gitignore: {done.stdout}"


PROCESS_SCRIPTS = [s for s in SCRIPTS if s not in ("bench/batch/bench_batch.py", "bench/build/bench_build.py")]


@pytest.mark.parametrize("script", PROCESS_SCRIPTS)
def test_the_process_benchmarks_run(smoke, script):
    assert smoke[script].result()


@pytest.mark.spark
def test_the_batch_benchmark_scores_on_spark_and_both_outputs_agree(smoke):
    assert "outputs agree" in smoke["bench/batch/bench_batch.py"].result()


@pytest.mark.docker
def test_the_build_benchmark_builds_and_runs_our_image(smoke):
    assert "same predictions as in-process" in smoke["bench/build/bench_build.py"].result()
