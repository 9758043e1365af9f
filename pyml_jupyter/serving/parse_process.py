"""The parse process: large request bodies are read (parsed and validated), and their answers written, in a
warm child process, so that the server's event loop, and the GIL it needs, stay free meanwhile.

Python's JSON parser is C code that holds the GIL from a body's first byte to its last (~0.1 s per MB on a
small machine), so on a thread it still stops every other request of the process, ``/ping`` included, for
that long. A body of more than ``PYML_PARSE_PROCESS_BYTES`` (default 256 KiB; 0: never) is therefore sent to
one child process, started with the server and kept warm, which holds the model's contract (``pyml.json``:
its schemas), not its code. The child runs the very functions the server runs inline
(:func:`~.invocations.read_invocations`, :func:`~.v2.read_v2`), so answers and errors (status, body, limits,
rule names) are the same on both paths; it sends back the validated input, numpy arrays, cheap to pickle.
The answer to such a request is written there too (:func:`~.invocations.write_invocations`,
:func:`~.v2.write_v2`: the JSON encoder holds the GIL as the parser does): the model's output goes to the
child, the answer's bytes come back. Smaller bodies are read, and answered, in the server process as before:
a round trip to the child costs ~1 ms.

If the child dies (killed, out of memory), the requests it was reading are answered 503
``PARSER_UNAVAILABLE`` (retry) and a new child is started; the server never waits on a dead one. The child
ignores SIGINT and SIGTERM (the server stops it once its requests are drained) and exits when its parent is
gone.

This module is part of the serving runtime: stdlib only (besides the runtime's own modules).
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import signal
import sys
import threading
import time
import uuid
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any, Callable

from .answers import Answer, ScoringError, log_error
from .invocations import read_invocations, write_invocations
from .limits import Limits
from .loader import ModelContract, read_package
from .v2 import read_v2, write_v2

__all__ = ["ParseProcess", "DEFAULT_PARSE_PROCESS_BYTES", "parse_process_bytes_from_env"]

DEFAULT_PARSE_PROCESS_BYTES = 256 * 1024
logger = logging.getLogger("pyml_jupyter.serving")

_CONTRACT: ModelContract | None = None  # in the child: the contract of the package it reads requests for


def parse_process_bytes_from_env(environ: dict | None = None) -> int:
    """``PYML_PARSE_PROCESS_BYTES`` (unset or empty: the default; 0 turns the parse process off)."""
    text = ((os.environ if environ is None else environ).get("PYML_PARSE_PROCESS_BYTES") or "").strip()
    if not text:
        return DEFAULT_PARSE_PROCESS_BYTES
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"PYML_PARSE_PROCESS_BYTES={text!r} is not an integer") from None
    if value < 0:
        raise ValueError(f"PYML_PARSE_PROCESS_BYTES must be 0 (off) or more, not {value}")
    return value


# ------------------------------------------------------------------------------------------- the child


def _start_child(package_path: str, parent_pid: int) -> None:
    """The child's initializer: the package's contract, no SIGINT or SIGTERM (sent to a whole process group,
    they would cut short the requests the server drains), and an exit when the parent is gone."""
    global _CONTRACT
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    logging.basicConfig(format="%(levelname)s:     %(message)s")  # its warnings (error ids) reach the same log
    _CONTRACT = ModelContract(read_package(package_path))

    def watch_parent() -> None:
        while os.getppid() == parent_pid:
            time.sleep(1)
        os._exit(0)

    threading.Thread(target=watch_parent, name="pyml-parse-parent", daemon=True).start()


def _ready() -> int:
    return os.getpid()


def _child_invocations(body: bytes, content_type: str | None, limits: Limits) -> tuple[Any, dict]:
    timings: dict[str, float] = {}
    return read_invocations(_CONTRACT, body, content_type, timings, limits), timings


def _child_write_invocations(output: Any) -> tuple[bytes, dict]:
    timings: dict[str, float] = {}
    return write_invocations(output, timings), timings


def _child_write_v2(output: Any, request: dict, model_name: str, model_version: str | None) -> tuple[Answer, dict]:
    timings: dict[str, float] = {}
    return write_v2(_CONTRACT, output, request, model_name=model_name, model_version=model_version,
                    timings=timings), timings


def _child_v2(body: bytes, json_length: int | None, limits: Limits) -> tuple[Any, dict]:
    timings: dict[str, float] = {}
    data, request = read_v2(_CONTRACT, body, timings, json_length=json_length, limits=limits)
    # the answer needs the request's id, outputs and parameters, never its inputs (sent back as `data`)
    return (data, {k: v for k, v in request.items() if k != "inputs"}), timings


# ------------------------------------------------------------------------------------------ the parent


class ParseProcess:
    """One warm child process reading the bodies of more than ``min_bytes`` of the package at ``package_path``."""

    def __init__(self, package_path: str | os.PathLike, limits: Limits,
                 min_bytes: int = DEFAULT_PARSE_PROCESS_BYTES) -> None:
        self.package_path = str(Path(package_path).resolve())
        self.limits = limits
        self.min_bytes = int(min_bytes)
        self._pool: ProcessPoolExecutor | None = None
        self._warm: Future | None = None

    def start(self) -> None:
        """Spawn the child and begin its warm-up (imports, contract); :meth:`wait_ready` waits for it."""
        main = sys.modules.get("__main__")
        if main is not None and not hasattr(main, "__spec__"):
            # an interactive shell's stand-in for __main__ (IPython's DummyMod) has no __spec__, which spawn reads;
            # None is what a script's __main__ has, and spawn then re-imports nothing of it
            main.__spec__ = None
        self._pool = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"),
                                         initializer=_start_child, initargs=(self.package_path, os.getpid()))
        self._warm = Future()
        try:
            self._warm = self._pool.submit(_ready)
        except Exception as exc:  # noqa: BLE001 - the child could not be spawned: wait_ready raises it
            self._warm.set_exception(exc)

    def wait_ready(self, timeout: float = 120) -> int:
        """Wait until the child has started; its process id."""
        return self._warm.result(timeout=timeout)

    @property
    def pid(self) -> int | None:
        """The child's process id, once it runs."""
        warm = self._warm
        return warm.result() if warm is not None and warm.done() and warm.exception() is None else None

    def takes(self, nbytes: int) -> bool:
        """Whether a body of ``nbytes`` is read by the child."""
        return self._pool is not None and 0 < self.min_bytes < nbytes

    async def read_invocations(self, body: bytes, content_type: str | None, timings: dict[str, float]) -> Any:
        """:func:`~.invocations.read_invocations` in the child (raises :class:`ScoringError`, 503 if it died)."""
        return await self._call(timings, _child_invocations, body, content_type, self.limits)

    async def read_v2(self, body: bytes, json_length: int | None, timings: dict[str, float]) -> tuple[Any, dict]:
        """:func:`~.v2.read_v2` in the child: the input and the request without its inputs."""
        return await self._call(timings, _child_v2, body, json_length, self.limits)

    async def write_invocations(self, output: Any, timings: dict[str, float]) -> bytes:
        """:func:`~.invocations.write_invocations` in the child: the answer's bytes."""
        return await self._call(timings, _child_write_invocations, output)

    async def write_v2(self, output: Any, request: dict, model_name: str, model_version: str | None,
                       timings: dict[str, float]) -> Answer:
        """:func:`~.v2.write_v2` in the child."""
        return await self._call(timings, _child_write_v2, output, request, model_name, model_version)

    async def _call(self, timings: dict[str, float], function: Callable, *args: Any) -> Any:
        pool = self._pool
        started = time.perf_counter()
        try:
            value, child_timings = await asyncio.wrap_future(pool.submit(function, *args))
        except BrokenProcessPool:
            self._replace(pool)
            raise ScoringError(503, "PARSER_UNAVAILABLE", "The process reading large requests stopped while "
                                                          "reading this one; a new one is starting: retry "
                                                          "the request") from None
        except ScoringError:
            raise
        except Exception as exc:  # noqa: BLE001 - e.g. a model output that cannot be pickled
            error_id = str(uuid.uuid4())
            log_error(error_id, "the parse process could not take or give back a value", exc)
            raise ScoringError(500, "SERIALIZE_ERROR", f"The request's data could not be passed to the parse "
                                                       f"process; the server log has the details under error_id "
                                                       f"{error_id}", error_id=error_id) from exc
        timings.update(child_timings)
        # the round trips to the child: the body there and the validated input back, the output there and the
        # answer back
        transfer = max(0.0, time.perf_counter() - started - sum(child_timings.values()))
        timings["transfer"] = timings.get("transfer", 0.0) + transfer
        return value

    def _replace(self, broken: ProcessPoolExecutor) -> None:
        """A new child for one that died (once, however many requests saw it die)."""
        if self._pool is not broken:
            return
        logger.error("the parse process died; starting a new one")
        broken.shutdown(wait=False, cancel_futures=True)
        self.start()

    def close(self) -> None:
        """Stop the child (after the requests it is reading)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
        self._pool = self._warm = None
