"""Messages between the trusted grader and the untrusted worker: no pickle, ever.

A frame is a 4-byte little-endian length, a JSON header of that length, then `header["payload"]` bytes
of safetensors (tensors by name; empty when there are none). Both JSON and safetensors are plain data:
reading them runs no code, so nothing the worker sends back can execute on the trusted side.

This module is imported by the worker too, so it depends only on the standard library and safetensors.
"""
from __future__ import annotations

import json
import os
import struct

MAX_HEADER_BYTES = 1 << 20


class ProtocolError(Exception):
    """The other side sent something that is not a valid frame (or closed the pipe)."""


def encode(header: dict, tensors: dict | None = None) -> bytes:
    from safetensors.torch import save

    payload = save(tensors) if tensors else b""
    head = json.dumps({**header, "payload": len(payload)}).encode()
    return struct.pack("<I", len(head)) + head + payload


def decode_header(head: bytes) -> dict:
    try:
        header = json.loads(head)
    except ValueError as exc:
        raise ProtocolError(f"header is not JSON: {exc}") from None
    if not isinstance(header, dict) or not isinstance(header.get("payload"), int) or header["payload"] < 0:
        raise ProtocolError("header is not a JSON object with a byte count")
    return header


def decode_payload(payload: bytes) -> dict:
    from safetensors.torch import load

    if not payload:
        return {}
    try:
        return load(payload)
    except Exception as exc:  # safetensors raises its own error types
        raise ProtocolError(f"payload is not valid safetensors: {exc}") from None


def write_frame(fd: int, header: dict, tensors: dict | None = None) -> None:
    view = memoryview(encode(header, tensors))
    while view:
        view = view[os.write(fd, view):]


def read_exact_blocking(fd: int, n: int) -> bytes:
    chunks, remaining = [], n
    while remaining:
        chunk = os.read(fd, min(remaining, 1 << 20))
        if not chunk:
            raise ProtocolError("pipe closed")
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def read_frame_blocking(fd: int) -> tuple[dict, dict]:
    """Worker side: block until a whole frame arrives (the trusted side is well behaved)."""
    (length,) = struct.unpack("<I", read_exact_blocking(fd, 4))
    if length > MAX_HEADER_BYTES:
        raise ProtocolError("header too large")
    header = decode_header(read_exact_blocking(fd, length))
    return header, decode_payload(read_exact_blocking(fd, header["payload"]))
