"""Tensors as raw bytes, as the Open Inference Protocol carries them: gRPC's ``raw_input_contents`` /
``raw_output_contents`` and the HTTP binary tensor data extension.

Numbers are little-endian, in row-major order; ``BOOL`` is one byte per element; each ``BYTES`` element is a
4-byte little-endian length followed by its bytes. BYTES inputs must be UTF-8 text (the schema's strings).
This module is part of the serving runtime: stdlib and numpy only.
"""

from __future__ import annotations

import math
import struct

import numpy as np

from .answers import ScoringError

__all__ = ["RAW_DTYPES", "decode_raw", "encode_tensor", "raw_size"]

RAW_DTYPES = {"BOOL": "?", "UINT8": "<u1", "UINT16": "<u2", "UINT32": "<u4", "UINT64": "<u8", "INT8": "<i1",
              "INT16": "<i2", "INT32": "<i4", "INT64": "<i8", "FP16": "<f2", "FP32": "<f4", "FP64": "<f8"}


def _unpack_bytes(raw: bytes, count: int, name: str) -> np.ndarray:
    out = np.empty(count, dtype=object)
    offset = 0
    view = memoryview(raw)
    for i in range(count):
        if offset + 4 > len(raw):
            raise ScoringError.bad_request(f"input '{name}' has fewer raw BYTES elements than its shape needs",
                                           field=name)
        (size,) = struct.unpack_from("<I", raw, offset)
        if offset + 4 + size > len(raw):
            raise ScoringError.bad_request(f"input '{name}' has a BYTES element longer than its raw data",
                                           field=name)
        out[i] = bytes(view[offset + 4:offset + 4 + size])
        offset += 4 + size
    if offset != len(raw):
        raise ScoringError.bad_request(f"input '{name}' has more raw bytes than its shape needs", field=name)
    return out


def utf8_texts(flat: np.ndarray, name: str) -> np.ndarray:
    """An object array of ``bytes`` as ``str`` (a 400 naming the input when one is not UTF-8)."""
    try:
        return np.array([v.decode("utf-8") if isinstance(v, bytes) else v for v in flat] if len(flat) else [],
                        dtype=object)
    except UnicodeDecodeError:
        raise ScoringError.bad_request(f"input '{name}' holds BYTES that are not UTF-8 text", field=name) from None


def decode_raw(raw: bytes, datatype: str, shape: list[int], name: str) -> np.ndarray:
    """The flat values of a tensor from its raw bytes (BYTES as ``str``); a 400 naming the input when the
    bytes do not match its datatype and shape."""
    count = math.prod(shape)
    if datatype == "BYTES":
        return utf8_texts(_unpack_bytes(raw, count, name), name)
    if datatype not in RAW_DTYPES:
        raise ScoringError.bad_request(f"input '{name}' has datatype {datatype!r}; use one of "
                                       f"{', '.join([*RAW_DTYPES, 'BYTES'])}", field=name)
    dtype = np.dtype(RAW_DTYPES[datatype])
    if len(raw) != count * dtype.itemsize:
        raise ScoringError.bad_request(f"input '{name}' has {len(raw)} raw bytes but its shape {shape} of "
                                       f"{datatype} needs {count * dtype.itemsize}", field=name)
    return np.frombuffer(raw, dtype=dtype)


def raw_size(datatype: str, shape: list[int]) -> int | None:
    """Bytes a tensor of ``datatype`` and ``shape`` takes raw (``None`` for BYTES: it depends on the values)."""
    dtype = RAW_DTYPES.get(datatype)
    return None if dtype is None else math.prod(shape) * np.dtype(dtype).itemsize


def encode_tensor(output: dict) -> bytes:
    """The raw bytes of a V2 output tensor ``{"datatype", "data" (flat)}``; ``None`` in float data (JSON's
    encoding of NaN) is NaN."""
    if output["datatype"] == "BYTES":
        parts = []
        for value in output["data"]:
            data = value if isinstance(value, bytes) else ("" if value is None else str(value)).encode("utf-8")
            parts.append(struct.pack("<I", len(data)) + data)
        return b"".join(parts)
    dtype = RAW_DTYPES[output["datatype"]]
    data = output["data"]
    if dtype[1] == "f" and not isinstance(data, np.ndarray) and any(v is None for v in data):
        data = [math.nan if v is None else v for v in data]
    return np.asarray(data, dtype=dtype).tobytes()
