"""JSON in and out of the serving runtime: one ``loads``/``dumps`` pair whatever libraries are installed.

orjson, when the image has it, parses and writes several times faster than the standard library; the answers
are the same bytes either way. This module is part of the serving runtime: stdlib (and orjson, optional) only.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["loads", "dumps", "JSON_ERRORS"]

try:  # optional: orjson parses and writes JSON several times faster than the stdlib
    import orjson

    def loads(data: bytes | str) -> Any:
        return orjson.loads(data)

    def dumps(obj: Any) -> bytes:
        return orjson.dumps(obj, option=orjson.OPT_SERIALIZE_NUMPY)

    JSON_ERRORS: tuple[type[Exception], ...] = (orjson.JSONDecodeError, UnicodeDecodeError)
except ImportError:  # pragma: no cover - depends on the environment
    # Without the check for circular references (~15% faster): what is written here is built by this runtime
    # (schema's JSON codec copies the model's values into fresh lists and dicts), so it has no cycles.
    _encoder = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, check_circular=False)

    def loads(data: bytes | str) -> Any:
        return json.loads(data)

    def dumps(obj: Any) -> bytes:
        return _encoder.encode(obj).encode("utf-8")

    JSON_ERRORS = (json.JSONDecodeError, UnicodeDecodeError)
