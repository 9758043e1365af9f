"""Long work (image builds, deployments) as job resources that a face can start, join and poll.

A :class:`JobManager` runs each job in a worker thread and hands back a :class:`Job` at once; the job holds
the :class:`~pyml_jupyter.progress.Progress` the core reports into, and, once done, a JSON-ready result or
error. One job runs per key (by default ``(kind, ref)``, e.g. ``("deploy", "churn/3")``): asking again for
the same key while it runs returns the running job instead of starting a second build of the same image.
Finished jobs stay readable for ``keep_seconds`` (and at most ``keep_finished`` of them), so a panel that
polls a little late still sees how the job ended.

Pure Python: no Tornado here. The jupyter_server handlers expose :meth:`Job.to_dict` as ``/pyml/jobs/{id}``.
"""

from __future__ import annotations

import itertools
import json
import logging
import threading
import time
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Callable, Hashable

from .errors import NotFound, PymlError
from .uris import redact
from .progress import Progress

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


def error_dict(exc: BaseException) -> dict[str, Any]:
    """The JSON form of an exception: a :class:`PymlError` speaks for itself, anything else is internal."""
    if isinstance(exc, PymlError):
        return {**exc.to_dict(), "status": exc.status}
    return {"error": "internal_error", "message": redact(f"{type(exc).__name__}: {exc}")}


class Job:
    """One piece of long work: what it is (kind, ref), how far it got (progress) and how it ended."""

    def __init__(self, kind: str, ref: str, key: Hashable, progress: Progress) -> None:
        self.id = uuid.uuid4().hex[:12]
        self.kind = kind
        self.ref = ref
        self.key = key
        self.progress = progress
        self.state = "queued"  # queued | running | succeeded | failed
        self.result: Any = None
        self.error: dict[str, Any] | None = None
        self.created = time.time()
        self.finished: float | None = None
        self._future: Future | None = None
        self._seq = 0

    @property
    def done(self) -> bool:
        return self.state in ("succeeded", "failed")

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
            "progress": self.progress.snapshot(log_tail),
        }

    def __repr__(self) -> str:
        return f"Job(id={self.id!r}, kind={self.kind!r}, ref={self.ref!r}, state={self.state!r})"


class JobManager:
    """Runs jobs in a thread pool, one per key at a time, and remembers finished ones for a while."""

    def __init__(
        self, *, max_workers: int = 4, keep_seconds: float = 3600.0, keep_finished: int = 100
    ) -> None:
        self.keep_seconds = keep_seconds
        self.keep_finished = keep_finished
        self._pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="pyml-job")
        self._lock = threading.Lock()
        self._jobs: dict[str, Job] = {}
        self._running: dict[Hashable, Job] = {}
        self._counter = itertools.count()

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
            job.error = error_dict(exc)
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
