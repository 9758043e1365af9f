"""JSON in and out of the serving runtime: one ``loads``/``dumps`` pair, the same bytes whatever is installed.

Both are the standard library's, on purpose: an optional faster library (orjson) would change the answers
depending on the image (it writes NaN as ``null`` and refuses ``NaN`` and integers beyond 64 bits in requests).
Non-finite floats are written as ``NaN``, ``Infinity`` and ``-Infinity``, as Python's ``json`` and MLflow's
scoring server write them; a missing value (``None``, ``pd.NA``) is ``null``. Requests may hold the same
literals. :func:`nesting_depth` measures a body's nesting before it is parsed, in one vectorized pass.

This module is part of the serving runtime: stdlib and numpy only.
"""

from __future__ import annotations

import json
import re
from typing import Any

import numpy as np

__all__ = ["loads", "dumps", "JSON_ERRORS", "nesting_depth"]

# No check for circular references (~15% faster): what is written here is built by this runtime (the schema
# codec copies the model's values into fresh lists and dicts), so it has no cycles.
_encoder = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, check_circular=False, allow_nan=True)
# ValueError covers JSONDecodeError and integers longer than Python's conversion limit (4300 digits).
JSON_ERRORS: tuple[type[Exception], ...] = (ValueError, UnicodeDecodeError, RecursionError)


def loads(data: bytes | str) -> Any:
    """The parsed JSON value (raises one of :data:`JSON_ERRORS` for invalid JSON or UTF-8)."""
    return json.loads(data)


def dumps(obj: Any) -> bytes:
    """Compact UTF-8 JSON; NaN and infinities as ``NaN``, ``Infinity``, ``-Infinity``."""
    return _encoder.encode(obj).encode("utf-8")


# Bytes -> their class for nesting_depth: 1 opens, 2 closes, 3 is a quote, 0 anything else.
_CLASSES = bytes(1 if b in b"[{" else 2 if b in b"]}" else 3 if b == ord('"') else 0 for b in range(256))
_ESCAPE = re.compile(rb"\\.", re.S)


def nesting_depth(body: bytes) -> int:
    """The deepest nesting of arrays and objects in a JSON text (brackets inside strings do not count).

    Linear in the body: escapes are blanked (``\\x`` -> two neutral bytes, so ``\\"`` ends no string), then one
    vectorized numpy pass over the brackets and quotes, counting only brackets outside strings. Exact for
    valid JSON (where backslashes occur only inside strings). A body is never deeper than its count of ``[``
    and ``{``: callers with a limit skip this pass when that count is within it."""
    if b"\\" in body:
        body = _ESCAPE.sub(b"__", body)
    classes = np.frombuffer(body.translate(_CLASSES), dtype=np.uint8)
    marks = classes[np.flatnonzero(classes)]
    if not len(marks):
        return 0
    quote = marks == 3
    in_string = np.bitwise_xor.accumulate(quote.view(np.uint8)).view(bool) | quote
    steps = np.where(in_string, 0, np.where(marks == 1, 1, -1)).astype(np.int32)
    return int(np.cumsum(steps).max(initial=0))
