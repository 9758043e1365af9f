"""The Open Inference Protocol's binary tensor data extension over HTTP, as KServe and Triton implement it.

A request may carry input tensors as raw bytes after its JSON: the ``Inference-Header-Content-Length``
header gives the JSON's length, and each binary input says its size in ``"parameters": {"binary_data_size":
N}`` (no ``"data"``); the inputs' bytes follow the JSON in input order. Raw bytes are those of
:mod:`.raw_tensors` (little-endian, row-major; BYTES elements each prefixed by a 4-byte length).

A request asks for binary outputs with ``"parameters": {"binary_data_output": true}`` (every output) or an
output's ``"parameters": {"binary_data": true}`` (that output; ``false`` keeps one in JSON). The answer is then
the JSON (each binary output with ``"parameters": {"binary_data_size": N}`` instead of ``"data"``) followed by
the outputs' bytes, with ``Inference-Header-Content-Length`` and ``Content-Type: application/octet-stream``.
A request that asks for no binary output gets plain JSON. ``tritonclient.http`` speaks this by default.

This module is part of the serving runtime: stdlib and numpy only (besides the runtime's own modules).
"""

from __future__ import annotations

from typing import Any, Mapping

from .answers import ScoringError
from .jsonio import dumps
from .raw_tensors import decode_raw, encode_tensor

__all__ = ["HEADER", "header_length", "attach_binary_inputs", "binary_outputs"]

HEADER = "inference-header-content-length"


def header_length(value: str | None, body_size: int) -> int | None:
    """The JSON part's length from the ``Inference-Header-Content-Length`` header (``None`` without it); a 400
    when it is not a length within the body."""
    if value is None:
        return None
    try:
        length = int(value)
    except ValueError:
        length = -1
    if not 0 < length <= body_size:
        raise ScoringError.bad_request(f"Inference-Header-Content-Length {value!r} must be the length of the JSON "
                                       f"at the start of the body, between 1 and {body_size}",
                                       field="Inference-Header-Content-Length")
    return length


def _parameters(item: Mapping, where: str) -> Mapping:
    parameters = item.get("parameters")
    if parameters is None:
        return {}
    if not isinstance(parameters, dict):
        raise ScoringError.bad_request(f"{where}: 'parameters' must be an object", field=where)
    return parameters


def attach_binary_inputs(payload: Any, binary: bytes | memoryview) -> None:
    """Give each input of ``payload`` that has a ``binary_data_size`` its decoded values as ``data`` (a numpy
    array, BYTES as ``str``), taken from ``binary`` in input order. Raises a 400 naming the input when sizes
    and bytes disagree; shapes and datatypes are checked as for JSON data."""
    inputs = payload.get("inputs") if isinstance(payload, dict) else None
    if not isinstance(inputs, list):
        return  # the JSON parser reports the missing inputs
    offset = 0
    for i, item in enumerate(inputs):
        if not isinstance(item, dict):
            continue
        name = item.get("name") if isinstance(item.get("name"), str) else f"inputs[{i}]"
        size = _parameters(item, f"input '{name}'").get("binary_data_size")
        if size is None:
            continue
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise ScoringError.bad_request(f"input '{name}': binary_data_size must be a non-negative integer",
                                           field=name)
        if "data" in item:
            raise ScoringError.bad_request(f"input '{name}' has both 'data' and binary_data_size: send one",
                                           field=name)
        if offset + size > len(binary):
            raise ScoringError.bad_request(f"input '{name}' needs {size} bytes of binary data but only "
                                           f"{len(binary) - offset} remain after the JSON", field=name)
        shape, datatype = item.get("shape"), item.get("datatype")
        if isinstance(shape, list) and all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape) \
                and isinstance(datatype, str):
            item["data"] = decode_raw(bytes(binary[offset:offset + size]), datatype, shape, name)
        offset += size
    if offset != len(binary):
        raise ScoringError.bad_request(f"the body has {len(binary) - offset} bytes after the JSON and the "
                                       "inputs' binary data (binary_data_size)")


def _wants_binary(request: Mapping, output_name: str) -> bool:
    everything = bool(_parameters(request, "request").get("binary_data_output", False))
    for wanted in request.get("outputs") or ():
        if isinstance(wanted, dict) and wanted.get("name") == output_name:
            flag = _parameters(wanted, f"output '{output_name}'").get("binary_data")
            return everything if flag is None else bool(flag)
    return everything


def binary_outputs(response: dict, request: Mapping) -> tuple[bytes, int] | None:
    """The answer with the outputs ``request`` wants in binary moved after the JSON: ``(body, JSON length)``;
    ``None`` when it wants none (the answer stays plain JSON)."""
    chunks = []
    for output in response.get("outputs", ()):
        if _wants_binary(request, output["name"]):
            raw = encode_tensor(output)
            del output["data"]
            output["parameters"] = {**output.get("parameters", {}), "binary_data_size": len(raw)}
            chunks.append(raw)
    if not chunks:
        return None
    head = dumps(response)
    return head + b"".join(chunks), len(head)
