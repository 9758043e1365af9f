"""Long work (image builds, deployments) as job resources that a face can start, join and poll.

A :class:`JobManager` runs each job in a worker thread and hands back a :class:`Job` at once; the job holds
the :class:`~pyml_jupyter.progress.Progress` the core reports into, and, once done, a JSON-ready result or
error. One job runs per key (by default ``(kind, ref)``, e.g. ``("deploy", "churn/3")``): asking again for
the same key while it runs returns the running job instead of starting a second build of the same image.
Finished jobs stay readable for ``keep_seconds`` (and at most ``keep_finished`` of them), so a panel that
polls a little late still sees how the job ended.

With a ``state_file``, the jobs are written there whenever one starts or ends; a manager created on the same
file (the Jupyter server restarted) shows the jobs that were still queued or running as ``lost``: nothing runs
them any more, and the panel says so instead of showing them running forever.

Pure Python: no Tornado here. The jupyter_server handlers expose :meth:`Job.to_dict` as ``/pyml/jobs/{id}``.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import threading
import time
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Hashable, Mapping

from .errors import NotFound, PymlError, with_hint
from .progress import Progress
from .uris import redact

__all__ = ["Job", "JobManager"]

log = logging.getLogger(__name__)

JobFunction = Callable[[Progress], Any]
"""The work: called in a worker thread with the job's progress; returns the result (``to_dict()``-able)."""


def _jsonable(result: Any) -> Any:
    """The JSON form of a job's result: ``to_dict()`` where there is one, else the value if it serialises."""
    if hasattr(result, "to_dict"):
        return result.to_dict()
    if isinstance(result, (list, tuple)):
        return [_jsonable(item) for item in result]
    try:
        json.dumps(result)
    except (TypeError, ValueError):
        return {"repr": repr(result)}
    return result


def error_dict(exc: BaseException, hints: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The JSON form of an exception: a :class:`PymlError` speaks for itself (with the face's hint for it),
    anything else is internal."""
    if isinstance(exc, PymlError):
        return {**exc.to_dict(), "message": with_hint(exc, hints or {}), "status": exc.status}
    return {"error": "internal_error", "message": redact(f"{type(exc).__name__}: {exc}")}


class Job:
    """One piece of long work: what it is (kind, ref), how far it got (progress) and how it ended."""

    def __init__(self, kind: str, ref: str, key: Hashable, progress: Progress) -> None:
        self.id = uuid.uuid4().hex[:12]
        self.kind = kind
        self.ref = ref
        self.key = key
        self.progress = progress
        self.state = "queued"  # queued | running | succeeded | failed | lost
        self.result: Any = None
        self.error: dict[str, Any] | None = None
        self.created = time.time()
        self.finished: float | None = None
        self._future: Future | None = None
        self._seq = 0
        self._snapshot: dict[str, Any] | None = None  # the last known progress of a job restored from disk

    @property
    def done(self) -> bool:
        return self.state in ("succeeded", "failed", "lost")

    @classmethod
    def restore(cls, record: dict[str, Any]) -> "Job":
        """A job read back from a state file; one that was queued or running then is ``lost`` now."""
        progress = dict(record.get("progress") or {})
        job = cls(str(record.get("kind", "")), str(record.get("ref", "")), None, Progress(progress.get("title", "")))
        job.id = str(record["id"])
        job.state, job.result, job.error = record.get("state", "lost"), record.get("result"), record.get("error")
        job.created, job.finished = float(record.get("created") or 0), record.get("finished")
        if job.state not in ("succeeded", "failed", "lost"):
            stage = progress.get("stage") or job.state
            job.error = {"error": "lost", "message": f"The Jupyter server stopped while this {job.kind} was "
                         f"{job.state} ({stage}): nothing runs it any more. Start it again."}
            job.state, job.finished = "lost", time.time()
            progress["state"], progress["error"] = "lost", job.error["message"]
        job._snapshot = progress
        return job

    def wait(self, timeout: float | None = None) -> "Job":
        """Block until the job has finished (for tests and the CLI); returns the job itself."""
        if self._future is not None:
            self._future.exception(timeout)  # waits; never raises the job's own exception
        return self

    def to_dict(self, log_tail: int = 200) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "ref": self.ref,
            "state": self.state,
            "result": self.result,
            "error": self.error,
            "created": self.created,
            "finished": self.finished,
            "progress": self._snapshot if self._snapshot is not None else self.progress.snapshot(log_tail),
        }

    def __repr__(self) -> str:
        return f"Job(id={self.id!r}, kind={self.kind!r}, ref={self.ref!r}, state={self.state!r})"


class JobManager:
    """Runs jobs in a thread pool, one per key at a time, and remembers finished ones for a while."""

    def __init__(
        self, *, max_workers: int = 4, keep_seconds: float = 3600.0, keep_finished: int = 100,
        state_file: str | Path | None = None, hints: Mapping[str, str] | None = None,
    ) -> None:
        self.state_file = Path(state_file) if state_file is not None else None
        self.keep_seconds = keep_seconds
        self.hints = dict(hints or {})  # the face's words for what to do after an error (errors.with_hint)
        self.keep_finished = keep_finished
        self._pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="pyml-job")
        self._lock = threading.Lock()
        self._jobs: dict[str, Job] = {}
        self._running: dict[Hashable, Job] = {}
        self._counter = itertools.count()
        if self.state_file is not None:
            self._load()

    def submit(
        self,
        kind: str,
        ref: str,
        fn: JobFunction,
        *,
        key: Hashable | None = None,
        title: str | None = None,
    ) -> Job:
        """Start ``fn(progress)`` in a worker, or return the job already running for the same key."""
        key = (kind, ref) if key is None else key
        with self._lock:
            running = self._running.get(key)
            if running is not None:
                return running
            self._prune()
            job = Job(kind, ref, key, Progress(title or f"{kind} {ref}"))
            job._seq = next(self._counter)
            self._jobs[job.id] = job
            self._running[key] = job
            job._future = self._pool.submit(self._run, job, fn)
            self._save()
        return job

    def get(self, job_id: str) -> Job:
        with self._lock:
            job = self._jobs.get(job_id)
        if job is None:
            raise NotFound(
                f"No job {job_id!r}: it never existed or finished long ago. "
                "List the current jobs with GET /pyml/jobs."
            )
        return job

    def list(self) -> list[Job]:
        """All known jobs, newest first."""
        with self._lock:
            self._prune()
            return sorted(self._jobs.values(), key=lambda job: job._seq, reverse=True)

    def shutdown(self, wait: bool = False) -> None:
        self._pool.shutdown(wait=wait, cancel_futures=True)

    def _run(self, job: Job, fn: JobFunction) -> None:
        job.state = "running"
        progress = job.progress
        try:
            result = fn(progress)
            job.result = _jsonable(result)
        except BaseException as exc:  # noqa: BLE001 - a job records every failure
            if not isinstance(exc, PymlError):
                log.exception("pyml job %s (%s %s) failed", job.id, job.kind, job.ref)
            job.error = error_dict(exc, self.hints)
            if progress.state == "running":
                progress.finish(job.error["message"])
            self._finish(job, "failed")
        else:
            if progress.state == "running":
                progress.finish()
            self._finish(job, "succeeded")

    def _finish(self, job: Job, state: str) -> None:
        with self._lock:
            job.finished = time.time()
            job.state = state
            if self._running.get(job.key) is job:
                del self._running[job.key]
            self._save()

    def _load(self) -> None:
        """Read the jobs of a previous server from :attr:`state_file` (a missing or broken file: none)."""
        assert self.state_file is not None
        try:
            records = json.loads(self.state_file.read_text())["jobs"]
            jobs = [Job.restore(record) for record in records]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            if not isinstance(exc, FileNotFoundError):
                log.warning("pyml: ignoring the unreadable job state file %s: %s", self.state_file, exc)
            return
        for job in sorted(jobs, key=lambda job: job.created):
            job._seq = next(self._counter)
            self._jobs[job.id] = job
        with self._lock:
            self._prune()
            self._save()

    def _save(self) -> None:
        """Write every known job to :attr:`state_file`, atomically (lock held)."""
        if self.state_file is None:
            return
        try:
            self.state_file.parent.mkdir(parents=True, exist_ok=True)
            records = [job.to_dict(log_tail=50) for job in sorted(self._jobs.values(), key=lambda job: job._seq)]
            temporary = self.state_file.with_name(f".{self.state_file.name}.{os.getpid()}.tmp")
            temporary.write_text(json.dumps({"jobs": records}))
            os.replace(temporary, self.state_file)
        except (OSError, TypeError, ValueError) as exc:
            log.warning("pyml: could not write the job state file %s: %s", self.state_file, exc)

    def _prune(self) -> None:
        """Forget finished jobs older than ``keep_seconds`` or beyond ``keep_finished`` (lock held)."""
        now = time.time()
        finished = sorted(
            (job for job in self._jobs.values() if job.done), key=lambda job: job._seq, reverse=True
        )
        for index, job in enumerate(finished):
            assert job.finished is not None
            if index >= self.keep_finished or now - job.finished > self.keep_seconds:
                del self._jobs[job.id]
