"""Prometheus metrics of the serving runtime, in the text exposition format, written by hand.

Enough to see traffic, failures, where the time goes and how requests batch::

    pyml_requests_total{route, method, status}          counter
    pyml_errors_total{route, error_code}                counter
    pyml_phase_seconds{route, phase}                    histogram: parse, validate, queue, predict, serialize,
                                                        transfer (to and from the parse process)
    pyml_batch_rows                                     histogram: rows per predict call
    pyml_batch_requests                                 histogram: requests per predict call
    pyml_queue_wait_seconds                             histogram: time a request waited for the model

plus ``pyml_model_info{name, version, run_id, kind} 1``. Each uvicorn worker is its own process and keeps its
own counts; a scrape sees the worker that answered it (run one worker per container to scrape exactly).

Updates happen on the event loop's thread only, so plain dicts and ints suffice (no locks on the hot path).
This module is part of the serving runtime: it imports only the standard library.
"""

from __future__ import annotations

from bisect import bisect_left
from typing import Iterable

__all__ = ["Histogram", "Metrics", "PHASES", "DEFAULT_BUCKETS", "SIZE_BUCKETS", "CONTENT_TYPE"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
PHASES = ("parse", "validate", "queue", "predict", "serialize")
# 50 µs .. 10 s: a 1-row request spends tens of µs per phase, a big batch through a big model seconds.
DEFAULT_BUCKETS = (
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)
# Rows and requests per predict call: powers of two up to far beyond any sensible budget.
SIZE_BUCKETS = tuple(float(2 ** i) for i in range(17))


def _escape(value: object) -> str:
    return str(value).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(names: Iterable[str], values: Iterable[object], extra: str = "") -> str:
    parts = [f'{n}="{_escape(v)}"' for n, v in zip(names, values)]
    if extra:
        parts.append(extra)
    return "{" + ",".join(parts) + "}" if parts else ""


def _number(x: float) -> str:
    if x == float("inf"):
        return "+Inf"
    return repr(float(x)) if isinstance(x, float) else str(x)


class Histogram:
    """Counts of observations per bucket (upper bounds, seconds), their sum and count."""

    __slots__ = ("bounds", "counts", "sum", "count")

    def __init__(self, bounds: tuple[float, ...] = DEFAULT_BUCKETS) -> None:
        self.bounds = tuple(sorted(bounds))
        self.counts = [0] * (len(self.bounds) + 1)  # the last one is +Inf
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        # bisect_left: a value equal to a bound belongs to that bucket (le = "less than or equal").
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value
        self.count += 1

    def cumulative(self) -> list[tuple[float, int]]:
        out, total = [], 0
        for bound, n in zip(self.bounds + (float("inf"),), self.counts):
            total += n
            out.append((bound, total))
        return out


class Metrics:
    """The runtime's metrics: call the ``observe_*`` methods, serve :meth:`render`."""

    def __init__(self, buckets: tuple[float, ...] = DEFAULT_BUCKETS) -> None:
        self.buckets = buckets
        self.requests: dict[tuple[str, str, int], int] = {}
        self.errors: dict[tuple[str, str], int] = {}
        self.phases: dict[tuple[str, str], Histogram] = {}
        self.batch_rows = Histogram(SIZE_BUCKETS)
        self.batch_requests = Histogram(SIZE_BUCKETS)
        self.queue_wait = Histogram(buckets)
        self.info: dict[str, str] = {}

    def observe_request(self, route: str, method: str, status: int) -> None:
        key = (route, method, status)
        self.requests[key] = self.requests.get(key, 0) + 1

    def observe_error(self, route: str, error_code: str) -> None:
        key = (route, error_code)
        self.errors[key] = self.errors.get(key, 0) + 1

    def observe_phase(self, route: str, phase: str, seconds: float) -> None:
        key = (route, phase)
        hist = self.phases.get(key)
        if hist is None:
            hist = self.phases[key] = Histogram(self.buckets)
        hist.observe(seconds)

    def observe_phases(self, route: str, timings: dict[str, float]) -> None:
        for phase, seconds in timings.items():
            self.observe_phase(route, phase, seconds)

    def observe_batch(self, rows: int, requests: int, waits: list[float]) -> None:
        """One predict call: its rows and requests, and how long each of its requests waited in the queue."""
        self.batch_rows.observe(rows)
        self.batch_requests.observe(requests)
        for seconds in waits:
            self.queue_wait.observe(seconds)

    def render(self) -> str:
        lines: list[str] = []
        if self.info:
            lines += ["# HELP pyml_model_info The model this server serves.", "# TYPE pyml_model_info gauge",
                      f"pyml_model_info{_labels(self.info.keys(), self.info.values())} 1"]
        lines += ["# HELP pyml_requests_total HTTP requests answered, by route, method and status.",
                  "# TYPE pyml_requests_total counter"]
        for (route, method, status), n in sorted(self.requests.items()):
            lines.append(f"pyml_requests_total{_labels(('route', 'method', 'status'), (route, method, status))} {n}")
        lines += ["# HELP pyml_errors_total Requests that failed, by route and error code.",
                  "# TYPE pyml_errors_total counter"]
        for (route, code), n in sorted(self.errors.items()):
            lines.append(f"pyml_errors_total{_labels(('route', 'error_code'), (route, code))} {n}")
        lines += ["# HELP pyml_phase_seconds Time spent per request phase (parse, validate, queue, predict, serialize, "
                  "transfer).",
                  "# TYPE pyml_phase_seconds histogram"]
        for (route, phase), hist in sorted(self.phases.items()):
            names, values = ("route", "phase"), (route, phase)
            for bound, total in hist.cumulative():
                le = 'le="' + _number(bound) + '"'
                lines.append(f"pyml_phase_seconds_bucket{_labels(names, values, le)} {total}")
            lines.append(f"pyml_phase_seconds_sum{_labels(names, values)} {_number(hist.sum)}")
            lines.append(f"pyml_phase_seconds_count{_labels(names, values)} {hist.count}")
        for name, help_text, hist in (
                ("pyml_batch_rows", "Rows per predict call.", self.batch_rows),
                ("pyml_batch_requests", "Requests per predict call (1 when nothing queued).", self.batch_requests),
                ("pyml_queue_wait_seconds", "Time a request waited for the model to be free.", self.queue_wait)):
            lines += [f"# HELP {name} {help_text}", f"# TYPE {name} histogram"]
            for bound, total in hist.cumulative():
                lines.append(f'{name}_bucket{{le="{_number(bound)}"}} {total}')
            lines += [f"{name}_sum {_number(hist.sum)}", f"{name}_count {hist.count}"]
        return "\n".join(lines) + "\n"
