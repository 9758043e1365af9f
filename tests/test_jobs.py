"""JobManager: long work in worker threads, one job per key, pollable progress, results and errors."""

from __future__ import annotations

import threading
import time

import pytest

from pyml_jupyter.errors import BuildError, NotFound
from pyml_jupyter.jobs import JobManager


@pytest.fixture
def jobs():
    manager = JobManager(max_workers=4)
    yield manager
    manager.shutdown(wait=True)


class Result:
    def to_dict(self):
        return {"tag": "pyml/m:1"}


def test_a_job_runs_in_a_worker_and_records_its_result(jobs):
    caller = threading.get_ident()
    seen = {}

    def work(progress):
        seen["thread"] = threading.get_ident()
        progress.set_stage("building", 0.5)
        progress.log("step 1/2")
        return Result()

    job = jobs.submit("build", "m/1", work).wait(10)
    assert seen["thread"] != caller
    assert job.state == "succeeded"
    assert job.result == {"tag": "pyml/m:1"}
    assert job.error is None
    assert job.finished is not None
    snapshot = job.to_dict()["progress"]
    assert snapshot["state"] == "succeeded"
    assert snapshot["fraction"] == 1.0
    assert snapshot["log"] == ["step 1/2"]


def test_submit_returns_before_the_work_is_done(jobs):
    release = threading.Event()
    job = jobs.submit("build", "m/1", lambda progress: release.wait(10))
    assert job.state in ("queued", "running")
    assert job.to_dict()["progress"]["state"] == "running"
    release.set()
    assert job.wait(10).state == "succeeded"


def test_a_second_request_for_the_same_key_joins_the_running_job(jobs):
    release = threading.Event()
    calls = []

    def work(progress):
        calls.append(1)
        release.wait(10)

    first = jobs.submit("deploy", "m/1", work)
    second = jobs.submit("deploy", "m/1", work)
    assert second is first
    release.set()
    first.wait(10)
    assert calls == [1]


def test_different_kinds_or_versions_run_separately(jobs):
    release = threading.Event()
    a = jobs.submit("build", "m/1", lambda p: release.wait(10))
    b = jobs.submit("deploy", "m/1", lambda p: release.wait(10))
    c = jobs.submit("build", "m/2", lambda p: release.wait(10))
    assert len({a.id, b.id, c.id}) == 3
    release.set()
    for job in (a, b, c):
        job.wait(10)


def test_a_finished_key_can_be_started_again(jobs):
    first = jobs.submit("build", "m/1", lambda p: 1).wait(10)
    second = jobs.submit("build", "m/1", lambda p: 2).wait(10)
    assert second is not first
    assert second.result == 2


def test_an_explicit_key_decides_what_counts_as_the_same_job(jobs):
    release = threading.Event()
    first = jobs.submit("deploy", "m", lambda p: release.wait(10), key=("deploy", "m", "3"))
    second = jobs.submit("deploy", "m/3", lambda p: None, key=("deploy", "m", "3"))
    assert second is first
    release.set()
    first.wait(10)


def test_a_pyml_error_is_recorded_in_its_json_form_with_its_http_status(jobs):
    def work(progress):
        progress.log("docker build ...")
        raise BuildError("pip could not install scikit-learn==0.0; pin a version that exists")

    job = jobs.submit("build", "m/1", work).wait(10)
    assert job.state == "failed"
    assert job.error == {
        "error": "build_error",
        "message": "pip could not install scikit-learn==0.0; pin a version that exists",
        "status": 500,
    }
    assert job.progress.state == "failed"
    assert "scikit-learn" in job.progress.error


def test_an_unexpected_exception_is_an_internal_error(jobs):
    def work(progress):
        raise ZeroDivisionError("division by zero")

    job = jobs.submit("build", "m/1", work).wait(10)
    assert job.state == "failed"
    assert job.error == {"error": "internal_error", "message": "ZeroDivisionError: division by zero"}


def test_progress_already_finished_by_the_work_is_left_alone(jobs):
    def work(progress):
        progress.finish()
        return {"ok": True}

    job = jobs.submit("build", "m/1", work).wait(10)
    assert job.progress.state == "succeeded"
    assert job.result == {"ok": True}


def test_get_and_list(jobs):
    a = jobs.submit("build", "m/1", lambda p: None).wait(10)
    b = jobs.submit("build", "m/2", lambda p: None).wait(10)
    assert jobs.get(a.id) is a
    assert [job.id for job in jobs.list()] == [b.id, a.id]  # newest first


def test_get_unknown_job_is_not_found(jobs):
    with pytest.raises(NotFound) as info:
        jobs.get("nope")
    assert info.value.status == 404


def test_finished_jobs_are_forgotten_after_keep_seconds():
    manager = JobManager(keep_seconds=0.05)
    try:
        job = manager.submit("build", "m/1", lambda p: None).wait(10)
        assert manager.get(job.id) is job
        time.sleep(0.1)
        assert manager.list() == []
        with pytest.raises(NotFound):
            manager.get(job.id)
    finally:
        manager.shutdown(wait=True)


def test_at_most_keep_finished_jobs_are_kept_but_running_ones_always():
    manager = JobManager(keep_finished=2)
    release = threading.Event()
    try:
        running = manager.submit("deploy", "m/9", lambda p: release.wait(10))
        done = [manager.submit("build", f"m/{i}", lambda p: None).wait(10) for i in range(4)]
        kept = {job.id for job in manager.list()}
        assert kept == {running.id, done[3].id, done[2].id}
        release.set()
        running.wait(10)
    finally:
        manager.shutdown(wait=True)


def test_to_dict_is_json_ready(jobs):
    import json

    job = jobs.submit("build", "m/1", lambda p: [Result(), Result()]).wait(10)
    payload = json.loads(json.dumps(job.to_dict()))
    assert payload["kind"] == "build"
    assert payload["ref"] == "m/1"
    assert payload["result"] == [{"tag": "pyml/m:1"}, {"tag": "pyml/m:1"}]
    assert set(payload) == {"id", "kind", "ref", "state", "result", "error", "created", "finished", "progress"}


def test_a_result_without_a_json_form_is_shown_by_its_repr(jobs):
    class Opaque:
        def __repr__(self):
            return "Opaque(1)"

    job = jobs.submit("build", "m/1", lambda p: Opaque()).wait(10)
    assert job.state == "succeeded"
    assert job.result == {"repr": "Opaque(1)"}


# ------------------------------------------------------------------------------------------- restarts


def test_a_job_running_when_the_server_stopped_is_lost_after_a_restart(tmp_path):
    state = tmp_path / "jobs.json"
    before = JobManager(state_file=state)
    release = threading.Event()
    running = before.submit("build", "m/1", lambda p: (p.set_stage("building image", 0.5), release.wait(10)))
    done = before.submit("deploy", "m/2", lambda p: {"url": "http://127.0.0.1:1"}).wait(10)

    after = JobManager(state_file=state)  # the server restarted: nothing runs the build any more

    lost = after.get(running.id)
    assert lost.state == "lost" and lost.done
    assert lost.error["error"] == "lost" and "stopped while this build" in lost.error["message"]
    assert lost.to_dict()["progress"]["state"] == "lost"
    assert after.get(done.id).state == "succeeded"
    assert after.get(done.id).result == {"url": "http://127.0.0.1:1"}
    assert [job.id for job in after.list()] == [done.id, running.id]
    assert after.submit("build", "m/1", lambda p: 1).wait(10).state == "succeeded"  # may start again
    release.set()
    before.shutdown(wait=True)
    after.shutdown(wait=True)


def test_a_broken_state_file_is_ignored(tmp_path):
    state = tmp_path / "jobs.json"
    state.write_text("{not json")
    manager = JobManager(state_file=state)
    assert manager.list() == []
    manager.submit("build", "m/1", lambda p: None).wait(10)
    assert len(JobManager(state_file=state).list()) == 1
    manager.shutdown(wait=True)
