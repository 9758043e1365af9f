"""Notebook displays for long work, composed from stock ipywidgets (after tqdm's notebook bar).

:func:`show_progress` renders a :class:`~pyml_jupyter.progress.Progress` live: a bar with the stage and a
collapsible log in a notebook; plain text lines in a terminal IPython or a CI log.
"""

from __future__ import annotations

import html
import sys
import time
from typing import Any

from .progress import Progress

__all__ = ["show_progress", "in_notebook"]


def in_notebook() -> bool:
    """True in a Jupyter kernel with ipywidgets available (widgets would render)."""
    try:
        from IPython import get_ipython

        shell = get_ipython()
        if shell is None or type(shell).__name__ != "ZMQInteractiveShell":
            return False
        import ipywidgets  # noqa: F401
    except ImportError:
        return False
    return True


class _WidgetView:
    """Bar + stage label + collapsible log, updated at most ``fps`` times a second."""

    def __init__(self, progress: Progress, fps: float = 5.0) -> None:
        import ipywidgets as w
        from IPython.display import display

        self.progress = progress
        self.bar = w.FloatProgress(value=0.0, min=0.0, max=1.0, bar_style="info",
                                   layout=w.Layout(width="40%"))
        self.label = w.HTML()
        self.log = w.HTML(layout=w.Layout(max_height="320px", overflow="auto"))
        self.accordion = w.Accordion(children=[self.log])
        self.accordion.set_title(0, "log")
        self.accordion.selected_index = None
        self.box = w.VBox([w.HBox([self.bar, self.label]), self.accordion])
        self._interval = 1.0 / fps
        self._last = 0.0
        display(self.box)
        progress.subscribe(self._on_event)
        self._render(force=True)

    def _on_event(self, progress: Progress, event: str, payload: Any) -> None:
        self._render(force=event in ("stage", "done"))

    def _render(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last < self._interval:
            return
        self._last = now
        snap = self.progress.snapshot(log_tail=200)
        if snap["fraction"] is None:
            self.bar.bar_style = "info"
            self.bar.value = 0.5 if snap["state"] == "running" else 1.0
        else:
            self.bar.value = snap["fraction"]
        elapsed = (snap["finished"] or time.time()) - snap["started"]
        state = {"running": "", "succeeded": " ✓", "failed": " ✗"}[snap["state"]]
        self.label.value = (f"<b>{html.escape(snap['title'])}</b>: {html.escape(snap['stage'])}{state} "
                            f"<span style='color:var(--jp-ui-font-color2)'>{elapsed:.1f} s</span>")
        self.log.value = "<pre style='margin:0;font-size:11px'>" + html.escape("\n".join(snap["log"])) + "</pre>"
        if snap["state"] == "succeeded":
            self.bar.bar_style, self.bar.value = "success", 1.0
        elif snap["state"] == "failed":
            self.bar.bar_style = "danger"
            self.accordion.selected_index = 0


class _TextView:
    """One line per stage change in a terminal or a CI log."""

    def __init__(self, progress: Progress, stream=None) -> None:
        self.stream = stream or sys.stdout
        progress.subscribe(self._on_event)

    def _on_event(self, progress: Progress, event: str, payload: Any) -> None:
        if event == "stage":
            print(f"[{progress.title}] {payload}", file=self.stream, flush=True)
        elif event == "done":
            outcome = f"failed: {payload}" if payload else "done"
            print(f"[{progress.title}] {outcome} ({time.time() - progress.started:.1f} s)", file=self.stream, flush=True)


def show_progress(progress: Progress) -> Progress:
    """Attach a live display to ``progress`` (a widget in a notebook, text elsewhere); returns it."""
    if in_notebook():
        _WidgetView(progress)
    else:
        _TextView(progress)
    return progress
