"""Request limits: what one request may cost the server, configured from the environment.

=====================  =======================  ========  ===================================================
setting                default                  answer    what it bounds
=====================  =======================  ========  ===================================================
``PYML_MAX_BODY_BYTES``  20 MiB                 413       the request body, before it is read
``PYML_MAX_ROWS``        100,000                413       rows (records, instances, CSV lines, first dimension)
``PYML_MAX_COLUMNS``     1,024                  400       keys of a record, columns of a CSV or split body,
                                                          named inputs (never fewer than the model's own)
``PYML_MAX_DEPTH``       32                     400       nesting of arrays and objects in a JSON body
=====================  =======================  ========  ===================================================

Each limit is checked before the work it bounds: the body's size before reading it, its nesting before
parsing it, rows and keys after parsing and before building columns. Together with a parser that builds only
the schema's columns (unknown keys and columns are counted, never gathered), a request costs time and memory
linear in its bytes. The messages name the limit and its setting. This module is part of the serving runtime:
stdlib only (besides the runtime's own modules).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Mapping

from .answers import ScoringError
from .jsonio import nesting_depth

__all__ = ["Limits", "DEFAULT_LIMITS", "DEFAULT_MAX_BODY_BYTES"]

DEFAULT_MAX_BODY_BYTES = 20 * 1024 * 1024


@dataclass(frozen=True)
class Limits:
    """The limits one request must respect (see the module's table)."""

    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    max_rows: int = 100_000
    max_columns: int = 1_024
    max_depth: int = 32

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: int | None) -> "Limits":
        """The limits from ``PYML_MAX_*`` variables (unset or empty: the default); ``overrides`` that are not
        None win. A value that is not a positive integer raises ValueError naming the setting."""
        environ = os.environ if environ is None else environ
        values = {}
        for field in ("max_body_bytes", "max_rows", "max_columns", "max_depth"):
            setting = "PYML_" + field.upper()
            raw = overrides.get(field)
            if raw is None:
                text = (environ.get(setting) or "").strip()
                if not text:
                    continue
                try:
                    raw = int(text)
                except ValueError:
                    raise ValueError(f"{setting}={text!r} is not an integer") from None
            if int(raw) < 1:
                raise ValueError(f"{setting} must be at least 1, not {raw}")
            values[field] = int(raw)
        return cls(**values)

    # ------------------------------------------------------------------------------------ checks
    def too_large(self, size: int, *, streaming: bool = False) -> ScoringError:
        """The 413 for a body of ``size`` bytes (``streaming``: more than that, still arriving)."""
        what = f"more than {self.max_body_bytes}" if streaming else str(size)
        return ScoringError(413, "PAYLOAD_TOO_LARGE", f"The body has {what} bytes; the limit is "
                                                      f"{self.max_body_bytes} bytes (PYML_MAX_BODY_BYTES). "
                                                      f"Send smaller batches.", limit="PYML_MAX_BODY_BYTES")

    def check_rows(self, rows: int) -> None:
        """413 when a request has more rows than ``max_rows``."""
        if rows > self.max_rows:
            raise ScoringError(413, "TOO_MANY_ROWS", f"The request has {rows} rows; the limit is {self.max_rows} "
                                                     f"rows per request (PYML_MAX_ROWS). Send smaller batches.",
                               limit="PYML_MAX_ROWS")

    def check_columns(self, columns: int, what: str, declared: int = 0) -> None:
        """400 when ``what`` (e.g. "a record") has more columns/keys than ``max_columns`` (or than the
        model's own ``declared`` count, when that is larger)."""
        limit = max(self.max_columns, declared)
        if columns > limit:
            raise ScoringError.bad_request(f"{what[:1].upper()}{what[1:]} has {columns} columns or keys; the limit "
                                           f"is {limit} (PYML_MAX_COLUMNS)", limit="PYML_MAX_COLUMNS")

    def check_depth(self, body: bytes) -> None:
        """400 when a JSON body nests arrays and objects deeper than ``max_depth`` (checked before parsing)."""
        if body.count(b"[") + body.count(b"{") <= self.max_depth:
            return  # cannot be deeper than it has opening brackets
        depth = nesting_depth(body)
        if depth > self.max_depth:
            raise ScoringError.bad_request(f"The JSON body nests {depth} levels deep; the limit is "
                                           f"{self.max_depth} (PYML_MAX_DEPTH)", limit="PYML_MAX_DEPTH")


DEFAULT_LIMITS = Limits()
