"""Row-counting adaptive batching with no timer: one ``predict`` call for the requests that queued meanwhile.

Validated inputs of concurrent requests wait in one FIFO queue. Whenever the model is idle, one call to the
model's ``predict`` takes everything queued, up to a row budget (``PYML_MAX_BATCH_ROWS``) and a byte budget
(``PYML_MAX_BATCH_BYTES``, counted on the request bodies), and each request gets back its own rows of the
output, by row range. Nothing ever waits on a timer: when the model is free the queue is empty and a request
is predicted after one turn of the event loop (a single request adds microseconds); under load, batches form
by themselves while the previous predict runs.

When the model is free, a batch starts as soon as no other request is known to be on its way to the queue. The HTTP
server counts the scoring requests it has handed to the app (:class:`Arrivals`; uvicorn starts the tasks of all the
requests it read in one go before any of them runs), and each leaves the count when it queues or is answered
without queueing. A request that queues on a free model while others are on their way leaves the start to the last
of them, which starts the batch as it queues; a lone request (c=1) starts its predict in its own step, with no
added turn of the event loop. The count is exact for requests the server has read; nothing waits on a timer or on
requests not yet read. Should a counted request never reach the queue (its body is slow to come), the batch starts
anyway after ``SETTLE_TURNS`` turns of the event loop. Callers that do not count their requests as they queue (the
h11 protocol, in-process clients, and gRPC, which counts a call while grpc reads its message: an interceptor, see
grpc_server.py) keep the earlier rule: the start goes to the end of the loop's ready callbacks, twice, and again
while requests kept arriving in the last turn or counted ones are still on their way (at most ``SETTLE_TURNS``
turns, and never past the row budget). Without either, the first request back after a batch would take the free
model alone, and the others would wait for that 1-row predict (measured here: half the predict calls at c=16 were
of one request).

When a predict finishes and requests queued meanwhile, the model does not wait for the event loop to answer the
batch it just predicted: if at least as many requests queued as the batch held, the next batch starts one turn of
the loop later, ahead of those answers (the turn lets the requests already read, whose steps are ready, queue too;
counted ones still on their way are not waited for). If fewer queued, the next batch waits for those answers to
be written and one more turn (in which the requests the answers bring back from closed-loop clients are read),
then starts under the arrival rule above: starting the few at once would split the clients into groups that
take turns on the model and never merge again (measured: batches of 1-2 requests at c=16).

Rules:

* Only models whose contract check proved batch invariance (``"batch_invariant": true`` in ``pyml.json``) are
  batched; the others, and ``PYML_MAX_BATCH_ROWS=0``, predict one request per call (through the same queue).
* A request with more rows than the budget runs alone; a request with 0 rows, or tensors whose first
  dimensions disagree, too.
* DataFrame requests read from JSON arrive as their validated columns (:class:`~.schema.FrameColumns`): a batch
  concatenates each column's arrays and builds one DataFrame, with a fresh ``RangeIndex``, and a batch of one
  builds its DataFrame alone (on the predict thread), so no DataFrame is built per request on the event loop.
  DataFrames (a CSV body) are concatenated likewise; each request gets its slice back with its own index.
  Tensors are concatenated along the first axis. An output that does not have one row per input row in the
  input's order (a DataFrame whose index is not the batch's, a tensor of another length) is caught: the batch
  is predicted again one request at a time and batching is turned off for this server, with a warning.
* If ``predict`` raises on a batch, its requests are predicted again one by one, so only a faulty request
  gets the error.

``predict`` runs on one worker thread (user models need not be thread-safe), so the event loop stays free to
answer health checks and metrics while a batch predicts; without an executor it runs inline, one request at a
time. The queue is touched only from the event loop's thread. This module is part of the serving runtime:
stdlib, numpy and pandas only.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from concurrent.futures import Executor
from typing import Any, Callable

import numpy as np
import pandas as pd

from .schema import FrameColumns

__all__ = ["ARRIVALS", "ARRIVAL_KEY", "Arrival", "Arrivals", "Batcher", "DEFAULT_MAX_BATCH_ROWS",
           "DEFAULT_MAX_BATCH_BYTES", "row_count", "merge_inputs", "split_output"]

DEFAULT_MAX_BATCH_ROWS = 256
DEFAULT_MAX_BATCH_BYTES = 4 * 1024 * 1024
SETTLE_TURNS = 16  # event loop turns a free model's next batch may be put off while requests keep arriving
logger = logging.getLogger("pyml_jupyter.serving")


class Arrival:
    """One counted request on its way to the queue; :meth:`leave` (idempotent) takes it off the count."""

    __slots__ = ("_arrivals",)

    def __init__(self, arrivals: "Arrivals | None") -> None:
        self._arrivals = arrivals

    def leave(self) -> None:
        arrivals, self._arrivals = self._arrivals, None
        if arrivals is not None:
            arrivals.count -= 1


class Arrivals:
    """How many scoring requests the HTTP server has started and the batcher has not queued yet (one per event
    loop: touched from the loop's thread only)."""

    __slots__ = ("count",)

    def __init__(self) -> None:
        self.count = 0

    def expect(self) -> Arrival:
        """Count one more request on its way; the caller makes sure its :meth:`Arrival.leave` is called."""
        self.count += 1
        return Arrival(self)


ARRIVALS = Arrivals()  # this process's: the HTTP protocol (server.py) counts into it, the app's batcher reads it
ARRIVAL_KEY = "pyml.arrival"  # where a counted request's Arrival rides in its ASGI scope


def row_count(data: Any) -> int | None:
    """The rows of a validated input (a DataFrame, its columns, or tensors sharing their first dimension), else
    ``None``."""
    if isinstance(data, (pd.DataFrame, FrameColumns)):
        return len(data)
    if isinstance(data, dict) and data:
        firsts = {arr.shape[0] if getattr(arr, "ndim", 0) >= 1 else None for arr in data.values()}
        if len(firsts) == 1:
            return firsts.pop()
    return None


def _column_arrays(frame: pd.DataFrame) -> list[Any] | None:
    """A DataFrame's column arrays, by position, without building a Series per column (``None`` if unknown)."""
    get = getattr(frame, "_get_column_array", None)  # pandas 1.4+; a Series per column costs ~8 us each
    if get is None:
        return None
    return [get(i) for i in range(frame.shape[1])]


def merge_inputs(inputs: list[Any]) -> Any | None:
    """One input holding the rows of ``inputs`` in order (``None`` when they cannot be merged exactly); validated
    columns (:class:`~.schema.FrameColumns`) become one DataFrame."""
    if any(isinstance(data, FrameColumns) for data in inputs):
        if all(isinstance(data, FrameColumns) for data in inputs):
            merged = FrameColumns.concat(inputs)
            if merged is not None:
                return merged.frame()
        inputs = [data.frame() if isinstance(data, FrameColumns) else data for data in inputs]
    first = inputs[0]
    if isinstance(first, pd.DataFrame):
        names = list(first.columns)
        firsts = _column_arrays(first)
        if firsts is not None and len(set(names)) == len(names) and all(isinstance(a, np.ndarray) for a in firsts):
            # Plain numpy columns: one array per column from the requests' arrays (a fifth of pd.concat's cost).
            per_input = [firsts] + [_column_arrays(data) for data in inputs[1:]]
            if any(arrays is None or len(arrays) != len(firsts) for arrays in per_input):
                return None
            columns = {name: np.concatenate([arrays[i] for arrays in per_input]) for i, name in enumerate(names)}
            merged = pd.DataFrame(columns, copy=False)
            arrays = _column_arrays(merged)
            same = arrays is not None and all(a.dtype == b.dtype for a, b in zip(arrays, firsts))
            return merged if same and list(merged.columns) == names else None
        merged = pd.concat(inputs, ignore_index=True, copy=False)
        # Validated frames share the schema's dtypes; anything that changed in concatenation is not batched.
        if not merged.dtypes.equals(first.dtypes):
            return None
        return merged
    names = list(first)
    if any(list(data) != names for data in inputs[1:]):
        return None
    merged = {}
    for name in names:
        arrays = [data[name] for data in inputs]
        if any(a.dtype != arrays[0].dtype or a.shape[1:] != arrays[0].shape[1:] for a in arrays[1:]):
            return None
        merged[name] = np.concatenate(arrays, axis=0)
    return merged


def split_output(output: Any, merged: Any, inputs: list[Any], sizes: list[int]) -> list[Any] | None:
    """Each request's rows of a batch's ``output``, or ``None`` when the output is not aligned with the input."""
    total = sum(sizes)
    bounds = np.cumsum([0] + sizes).tolist()
    if isinstance(output, pd.Series):
        output = output.to_frame()
    if isinstance(output, pd.DataFrame):
        if len(output) != total or not output.index.equals(merged.index):
            return None
        parts = []
        for data, start, stop in zip(inputs, bounds, bounds[1:]):
            part = output.iloc[start:stop]
            part.index = data.index  # the request's own index, as if it had been predicted alone
            parts.append(part)
        return parts
    if isinstance(output, dict) and output:
        arrays = {name: np.asarray(value) for name, value in output.items()}
        if any(a.ndim == 0 or a.shape[0] != total for a in arrays.values()):
            return None
        return [{name: a[start:stop] for name, a in arrays.items()} for start, stop in zip(bounds, bounds[1:])]
    return None


class _Pending:
    __slots__ = ("data", "rows", "nbytes", "future", "queued", "waited", "predict_seconds")

    def __init__(self, data: Any, rows: int | None, nbytes: int, future: asyncio.Future) -> None:
        self.data = data
        self.rows = rows
        self.nbytes = nbytes
        self.future = future
        self.queued = time.perf_counter()
        self.waited = 0.0
        self.predict_seconds = 0.0


class Batcher:
    """The queue in front of one model. ``await predict(data, nbytes)`` gives this request's output.

    ``predict_batch`` is the model's own call (anything it raises is retried one by one); ``predict_one``
    predicts one request and raises the error that request should get. ``observe`` (optional) receives
    ``(rows, requests)`` per predict call and ``wait`` seconds per request, on the event loop's thread.
    ``arrivals`` counts the requests on their way to the queue (default: this process's :data:`ARRIVALS`).
    """

    def __init__(self, predict_batch: Callable[[Any], Any], predict_one: Callable[[Any], Any], *,
                 executor: Executor | None, batching: bool, max_rows: int = DEFAULT_MAX_BATCH_ROWS,
                 max_bytes: int = DEFAULT_MAX_BATCH_BYTES,
                 observe: Callable[[int, int, list[float]], None] | None = None,
                 arrivals: Arrivals | None = None) -> None:
        self.predict_batch = predict_batch
        self.predict_one = predict_one
        self.executor = executor
        self.batching = bool(batching and max_rows > 0 and executor is not None)
        self.max_rows = max_rows
        self.max_bytes = max_bytes
        self.observe = observe
        self.arrivals = ARRIVALS if arrivals is None else arrivals
        self._queue: deque[_Pending] = deque()
        self._queued_rows = 0
        self._busy = False
        self._settling = False
        self._holding = False  # the next batch waits for the answers of the one that just finished
        self._counted = False  # whether the last request queued came with an arrival (an HTTP request)

    async def predict(self, data: Any, nbytes: int = 0, timings: dict[str, float] | None = None,
                      arrival: Arrival | None = None) -> Any:
        """This request's output (raises what ``predict_one`` raises for it). ``arrival``: the request's place in
        :attr:`arrivals`, left as it queues (``None``: a caller that does not count its requests)."""
        if arrival is not None:
            arrival.leave()
        if self.executor is None:  # inline: the event loop itself predicts, one request at a time
            started = time.perf_counter()
            try:
                return self.predict_one(data)
            finally:
                self._record(timings, 0.0, time.perf_counter() - started)
                if self.observe is not None:
                    self.observe(row_count(data) or 0, 1, [0.0])
        pending = _Pending(data, row_count(data) if self.batching else None, nbytes,
                           asyncio.get_running_loop().create_future())
        self._queue.append(pending)
        self._queued_rows += pending.rows or 0
        self._counted = arrival is not None
        if not self._busy:
            self._next()
        try:
            return await pending.future
        finally:
            self._record(timings, pending.waited, pending.predict_seconds)

    @staticmethod
    def _record(timings: dict[str, float] | None, waited: float, seconds: float) -> None:
        if timings is not None:
            timings["queue"] = waited
            timings["predict"] = seconds

    # ------------------------------------------------------------------------------------ the loop side
    def _take(self) -> list[_Pending]:
        """The next batch: the queue's head, then what follows it within the budgets."""
        head = self._queue.popleft()
        self._queued_rows -= head.rows or 0
        batch = [head]
        if not self.batching or not head.rows:
            return batch
        rows, nbytes = head.rows, head.nbytes
        while self._queue:
            item = self._queue[0]
            if not item.rows or rows + item.rows > self.max_rows or nbytes + item.nbytes > self.max_bytes:
                break
            rows += item.rows
            nbytes += item.nbytes
            self._queued_rows -= item.rows
            batch.append(self._queue.popleft())
        return batch

    def _settle(self) -> None:
        """Start the next batch, after the requests that are ready on the event loop have queued."""
        if not self.batching:
            self._start()
        elif not self._settling:
            self._settling = True
            # -1: the first look always comes back once, after what was ready when it ran
            asyncio.get_running_loop().call_soon(self._start_settled, -1, SETTLE_TURNS)

    def _start_settled(self, seen: int, turns: int) -> None:
        if self._busy or not self._queue:
            self._settling = False
            return
        if (len(self._queue) != seen or self.arrivals.count > 0) and turns > 1 and self._queued_rows < self.max_rows:
            # requests arrived during the last turn, or counted ones are on their way (a gRPC call whose message
            # is being read): more may be ready; look once more after them
            asyncio.get_running_loop().call_soon(self._start_settled, len(self._queue), turns - 1)
            return
        self._settling = False
        self._start()

    def _next(self) -> None:
        """The model is free and the queue holds requests: start the next batch now, or once those on their way
        have queued."""
        if self._holding:
            return  # the batch that just finished is being answered: _end_hold starts the next one
        if not self._counted:
            self._settle()
        elif not self.batching or self.arrivals.count <= 0 or self._queued_rows >= self.max_rows:
            self._start()  # nobody else is on the way (or the budget is full): predict now
        elif not self._settling:  # the last of those on the way starts it; a safety net if one never comes
            self._settling = True
            asyncio.get_running_loop().call_soon(self._start_when_arrived, SETTLE_TURNS)

    def _start_when_arrived(self, turns: int) -> None:
        if self._busy or not self._queue:
            self._settling = False
            return
        if self.arrivals.count > 0 and turns > 1 and self._queued_rows < self.max_rows:
            asyncio.get_running_loop().call_soon(self._start_when_arrived, turns - 1)
            return
        self._settling = False
        self._start()

    def _start_queued(self) -> None:
        """Start the next batch with what queued while the model worked (nothing to do if one started already)."""
        if not self._busy and self._queue:
            self._start()

    def _start(self) -> None:
        batch = self._take()
        now = time.perf_counter()
        waits = []
        for item in batch:
            item.waited = now - item.queued
            waits.append(item.waited)
        self._busy = True
        future = asyncio.wrap_future(self.executor.submit(self._run, batch))
        future.add_done_callback(lambda f: self._finish(batch, waits, f))

    def _finish(self, batch: list[_Pending], waits: list[float], done: asyncio.Future) -> None:
        self._busy = False
        loop = asyncio.get_running_loop()
        hold = bool(self._queue) and self.batching and len(self._queue) < len(batch) and \
            self._queued_rows < self.max_rows
        if self._queue and not hold:
            # As many requests queued while the model worked as it just answered: they start one turn from now
            # (with the requests already read, whose steps are ready), ahead of this batch's answers.
            loop.call_soon(self._start_queued)
        results = done.result() if not done.cancelled() and done.exception() is None else None
        if self.observe is not None:
            self.observe(sum(item.rows or row_count(item.data) or 0 for item in batch), len(batch), waits)
        for i, item in enumerate(batch):
            if item.future.done():  # the request was cancelled (its client went away)
                continue
            if results is None:
                item.future.set_exception(done.exception() or asyncio.CancelledError())
                continue
            ok, value = results[i]
            if ok:
                item.future.set_result(value)
            else:
                item.future.set_exception(value)
        if hold:
            # Fewer queued than answered: the next batch waits for this batch's answers and for the requests they
            # bring back (one more turn, then the arrival rule), so the two groups merge instead of taking turns
            self._holding = True
            loop.call_soon(loop.call_soon, self._end_hold)

    def _end_hold(self) -> None:
        self._holding = False
        if not self._busy and self._queue:
            self._next()

    # ---------------------------------------------------------------------------------- the thread side
    def _run(self, batch: list[_Pending]) -> list[tuple[bool, Any]]:
        """Predict a batch on the worker thread: ``(True, output)`` or ``(False, exception)`` per request."""
        if len(batch) > 1:
            inputs = [item.data for item in batch]
            started = time.perf_counter()
            merged = merge_inputs(inputs)
            if merged is not None:
                try:
                    output = self.predict_batch(merged)
                except Exception:  # noqa: BLE001 - retried one by one: only the faulty request fails
                    logger.info("a batch of %d requests failed; predicting them one by one", len(batch))
                else:
                    parts = split_output(output, merged, inputs, [item.rows for item in batch])
                    seconds = time.perf_counter() - started
                    if parts is not None:
                        for item in batch:
                            item.predict_seconds = seconds
                        return [(True, part) for part in parts]
                    self.batching = False
                    logger.warning("the model's output for a batch of %d requests does not keep one row per input "
                                   "row in order; batching is now off for this server", len(batch))
        return [self._run_one(item) for item in batch]

    def _run_one(self, item: _Pending) -> tuple[bool, Any]:
        started = time.perf_counter()
        try:
            return True, self.predict_one(item.data)
        except Exception as exc:  # noqa: BLE001 - handed to the request's own future
            return False, exc
        finally:
            item.predict_seconds = time.perf_counter() - started
