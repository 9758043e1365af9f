"""One progress abstraction for long work (builds, deployments, batch jobs).

The core reports into a :class:`Progress`; faces subscribe to it: the notebook widget renders it live, the
jupyter_server job resource exposes :meth:`Progress.snapshot` to the panel, plain text goes to a terminal.
It is thread-safe: work runs in a worker thread while a face reads.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from typing import IO, Callable

__all__ = ["Progress", "Listener", "EVENT_PREFIX"]

EVENT_PREFIX = "PYML-PROGRESS "
"""How a child process's progress events start on its stderr (see :meth:`Progress.relay_to`)."""

Listener = Callable[["Progress", str, object], None]
"""Called as ``listener(progress, event, payload)`` with event in {"stage", "fraction", "log", "done"}."""


class Progress:
    """Stage, fraction done (when known) and a bounded log tail of one piece of long work."""

    def __init__(self, title: str = "", *, log_lines: int = 2000) -> None:
        self.title = title
        self.stage = "pending"
        self.fraction: float | None = None
        self.state = "running"  # running | succeeded | failed
        self.error: str | None = None
        self.started = time.time()
        self.finished: float | None = None
        self._log: deque[str] = deque(maxlen=log_lines)
        self._lines_total = 0
        self._lock = threading.Lock()
        self._listeners: list[Listener] = []

    def subscribe(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def _emit(self, event: str, payload: object) -> None:
        for listener in list(self._listeners):
            listener(self, event, payload)

    def set_stage(self, stage: str, fraction: float | None = None) -> None:
        with self._lock:
            self.stage = stage
            self.fraction = fraction
        self._emit("stage", stage)

    def set_fraction(self, fraction: float | None) -> None:
        with self._lock:
            self.fraction = None if fraction is None else max(0.0, min(1.0, fraction))
        self._emit("fraction", self.fraction)

    def log(self, line: str) -> None:
        line = line.rstrip("\n")
        if not line:
            return
        with self._lock:
            self._log.append(line)
            self._lines_total += 1
        self._emit("log", line)

    def finish(self, error: str | None = None) -> None:
        with self._lock:
            self.state = "failed" if error else "succeeded"
            self.error = error
            self.finished = time.time()
            if not error:
                self.fraction = 1.0
        self._emit("done", error)

    def tail(self, n: int = 40) -> list[str]:
        with self._lock:
            return list(self._log)[-n:]

    def snapshot(self, log_tail: int = 200) -> dict:
        """A JSON-ready view: what the panel polls."""
        with self._lock:
            return {
                "title": self.title,
                "stage": self.stage,
                "fraction": self.fraction,
                "state": self.state,
                "error": self.error,
                "started": self.started,
                "finished": self.finished,
                "log": list(self._log)[-log_tail:],
                "log_lines": self._lines_total,
            }

    def relay_to(self, stream: IO[str]) -> "Progress":
        """Write every stage, fraction and log event to ``stream`` as one ``PYML-PROGRESS {json}`` line, for
        a parent process to :meth:`replay` (work in a child process, progress in the parent's job)."""

        def write(progress: "Progress", event: str, payload: object) -> None:
            if event != "done":
                data = {"event": event, "payload": payload}
                if event == "stage":
                    data["fraction"] = progress.fraction
                print(EVENT_PREFIX + json.dumps(data, default=str), file=stream, flush=True)

        self.subscribe(write)
        return self

    def replay(self, line: str) -> None:
        """Apply one line of a child's stderr: a relayed event, or else a log line."""
        if not line.startswith(EVENT_PREFIX):
            self.log(line)
            return
        try:
            data = json.loads(line[len(EVENT_PREFIX):])
        except ValueError:
            self.log(line)
            return
        event, payload = data.get("event"), data.get("payload")
        if event == "stage":
            self.set_stage(str(payload), data.get("fraction"))
        elif event == "fraction":
            self.set_fraction(payload if isinstance(payload, (int, float)) else None)
        elif event == "log":
            self.log(str(payload))

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        """``with progress: ...`` finishes it: failed with the exception's message, else succeeded."""
        if self.state == "running":
            self.finish(None if exc is None else (getattr(exc, "message", None) or str(exc) or type(exc).__name__))
