"""The width of a CSV body's rows, counted on its bytes: the first row with more values than the header.

pandas, told to build only the schema's columns (``usecols``), tokenizes every value of a row but drops those
past the header's width without a word (and reads a body whose every row has one value more than the header as
one with an index column, its columns shifted). So the body's rows are counted here, before pandas reads it, in
one vectorized pass over the bytes (a few ms per MB, a fraction of pandas' own parse): the separators (``,``)
and line ends (``\\n``, ``\\r``) outside quoted fields, per line. A quoted field is one that opens with ``"`` at
the start of a field and closes at the next lone ``"`` (``""`` inside it is one quote), as pandas' C tokenizer
reads it. A body whose quotes do not all sit where that count can follow them (``12"`` in a plain field, which
pandas reads as a plain character) is counted by the standard library's ``csv`` reader instead: exact, linear,
about twice pandas' time; only such bodies pay it.

This module is part of the serving runtime: stdlib and numpy only.
"""

from __future__ import annotations

import csv
import io
from typing import NamedTuple

import numpy as np

__all__ = ["WideRow", "first_wide_row"]

_COMMA, _QUOTE, _LF, _CR = b","[0], b'"'[0], b"\n"[0], b"\r"[0]
_FIELD_START = np.array([_COMMA, _LF, _CR], dtype=np.uint8)  # the bytes after which a field starts


class WideRow(NamedTuple):
    """A row with more values than the header: the body's line it starts on (1-based), its values, the header's."""

    line: int
    values: int
    header: int


def first_wide_row(body: bytes) -> WideRow | None:
    """The body's first row with more values than its header (the first line that is not blank), or None."""
    start = len(body) - len(body.lstrip(b" \t\r\n"))  # pandas skips blank lines, before the header too
    if start == len(body):
        return None
    data = np.frombuffer(body, dtype=np.uint8)
    quotes = np.flatnonzero(data == _QUOTE)
    if not _quotes_open_fields(data, quotes):
        return _first_wide_row_read_by_csv(body)
    separators, ends = data == _COMMA, (data == _LF) | (data == _CR)
    if len(quotes):
        outside = ~_inside_quotes(len(data), quotes)
        separators &= outside
        ends &= outside
    starts = np.flatnonzero(ends) + 1
    starts = np.concatenate(([0], starts[starts < len(data)]))  # each line's first byte (\r\n: an empty line)
    per_line = np.add.reduceat(separators, starts, dtype=np.int64)
    header = int(np.searchsorted(starts, start, side="right")) - 1
    wider = np.flatnonzero(per_line[header + 1:] > per_line[header])
    if not len(wider):
        return None
    row = header + 1 + int(wider[0])
    return WideRow(_line_of(body, int(starts[row])), int(per_line[row]) + 1, int(per_line[header]) + 1)


def _quotes_open_fields(data: np.ndarray, quotes: np.ndarray) -> bool:
    """Whether every quote that the count takes as opening a quoted field (the 1st, 3rd, ...) does: it starts
    the body or a field, or it follows the quote before it (``""``, a quote inside the quoted field)."""
    opening = quotes[0::2]
    if not len(opening):
        return True
    before = opening - 1
    closing_before = np.concatenate(([-2], quotes[1::2][: len(opening) - 1]))
    ok = (opening == 0) | np.isin(data[np.maximum(before, 0)], _FIELD_START) | (closing_before == before)
    return bool(ok.all())


def _inside_quotes(size: int, quotes: np.ndarray) -> np.ndarray:
    """A mask of the bytes from each opening quote to its closing one (to the end when it never closes)."""
    bounds = np.concatenate(([0], quotes, [size]))
    inside = np.zeros(len(bounds) - 1, dtype=bool)
    inside[1::2] = True  # between an opening quote and the next one
    return np.repeat(inside, np.diff(bounds))


def _line_of(body: bytes, offset: int) -> int:
    """The body's line (1-based) at ``offset``: a line ends at \\n, \\r or \\r\\n, quoted or not."""
    return body.count(b"\n", 0, offset) + body.count(b"\r", 0, offset) - body.count(b"\r\n", 0, offset) + 1


def _first_wide_row_read_by_csv(body: bytes) -> WideRow | None:
    """:func:`first_wide_row` by the ``csv`` module (None when it cannot read the body: pandas then decides)."""
    reader = csv.reader(io.StringIO(body.decode("utf-8", "replace"), newline=""))
    header, line = 0, 1
    try:
        for row in reader:
            if row and (len(row) > 1 or row[0] == "" or row[0].strip(" \t")):  # not a blank line ('""' is not)
                if not header:
                    header = len(row)
                elif len(row) > header:
                    return WideRow(line, len(row), header)
            line = reader.line_num + 1
    except csv.Error:  # e.g. a field longer than the module's limit
        return None
    return None
