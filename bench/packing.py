"""Packed payload frames: several payloads compressed together in one zstd frame (benchmark variant).

Not the storage format of services.payloads (one frame per payload). Packing lets zstd match
across payloads that share structure, e.g. the same step of consecutive executions of a workflow.
"""
from __future__ import annotations

import struct

import zstandard

from services import codec
from services.errors import CodecError

_COUNT = struct.Struct("<I")


def pack(payloads: list[bytes], *, dictionary: zstandard.ZstdCompressionDict | None = None,
         level: int = codec.DEFAULT_LEVEL) -> bytes:
    """Compress payloads into one frame: a length table, then the payloads back to back."""
    header = _COUNT.pack(len(payloads)) + struct.pack(f"<{len(payloads)}I", *(len(p) for p in payloads))
    return codec.encode(header + b"".join(payloads), dictionary=dictionary, level=level)


def unpack(blob: bytes, *, dictionary: zstandard.ZstdCompressionDict | None = None) -> list[bytes]:
    """The payloads of a frame made by pack, byte for byte."""
    data = codec.decode(blob, dictionary=dictionary)
    (count,) = _COUNT.unpack_from(data)
    lengths = struct.unpack_from(f"<{count}I", data, _COUNT.size)
    offset = _COUNT.size + 4 * count
    if offset + sum(lengths) != len(data):
        raise CodecError("packed frame length table does not match its contents")
    out = []
    for length in lengths:
        out.append(data[offset:offset + length])
        offset += length
    return out
