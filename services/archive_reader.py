"""Archive objects: their format, and reading an archived (or erased) payload back by id."""
from __future__ import annotations

import json
import threading
from collections import OrderedDict
from typing import Any
from uuid import UUID

import sqlalchemy as sa
import zstandard
from sqlalchemy import Connection

from services import codec
from services.errors import CodecError, NotFound
from services.objectstore import ObjectStore

FORMAT = "flowledger-archive/1"
# What a payload removed by a GDPR erasure reads as: the execution still opens, the data is gone.
ERASED = {"erased": True, "reason": "GDPR erasure"}
# Decoded archives kept per process: one execution's payloads are read one by one, from one object.
_CACHE_SIZE = 8
_cache: OrderedDict[str, dict[str, Any]] = OrderedDict()
_cache_lock = threading.Lock()


def encode_archive(document: dict[str, Any]) -> bytes:
    """An archive document as a zstd-compressed JSON object."""
    return compress_archive(codec.canonical_json(document))


def compress_archive(raw: bytes) -> bytes:
    """The canonical JSON bytes of an archive document, compressed as its object is stored."""
    return zstandard.ZstdCompressor(level=9).compress(raw)


def decode_archive(blob: bytes) -> dict[str, Any]:
    """The JSON document inside an archive object."""
    try:
        document = json.loads(zstandard.ZstdDecompressor().decompress(blob))
    except (zstandard.ZstdError, ValueError) as exc:
        raise CodecError(f"archive object cannot be decoded: {exc}") from exc
    if document.get("format") != FORMAT:
        raise CodecError(f"unknown archive format {document.get('format')!r}")
    return document


def read_archive(store: ObjectStore, uri: str) -> dict[str, Any]:
    """The decoded archive at uri, through a small per-process cache."""
    with _cache_lock:
        if uri in _cache:
            _cache.move_to_end(uri)
            return _cache[uri]
    document = decode_archive(store.get(uri))
    with _cache_lock:
        _cache[uri] = document
        while len(_cache) > _CACHE_SIZE:
            _cache.popitem(last=False)
    return document


def forget(uri: str) -> None:
    """Drop a cached archive (after it was rewritten or deleted)."""
    with _cache_lock:
        _cache.pop(uri, None)


def payload_bytes(entry: dict[str, Any], store: ObjectStore) -> bytes:
    """The JSON bytes of one archived payload entry (kept inline, or still in its offloaded object)."""
    if entry.get("json") is not None:
        return entry["json"].encode("utf-8")
    if entry.get("uri"):
        return codec.decode(store.get(entry["uri"]))
    raise NotFound(f"archived payload {entry.get('payload_id')} holds no data")


def load_raw(conn: Connection, store: ObjectStore, payload_id: UUID) -> bytes | None:
    """The JSON bytes of a payload whose row left PostgreSQL: from its archive, or the erased marker."""
    row = conn.execute(sa.text(
        "SELECT m.uri, a.execution_id FROM archived_payloads a JOIN archive_manifests m "
        "ON m.archive_id = a.archive_id WHERE a.payload_id = :p"), {"p": payload_id}).one_or_none()
    if row is not None:
        document = read_archive(store, row.uri)
        for execution in document["executions"]:
            if execution["execution_id"] == str(row.execution_id):
                for entry in execution["payloads"]:
                    if entry["payload_id"] == str(payload_id):
                        return payload_bytes(entry, store)
        raise NotFound(f"payload {payload_id} is missing from archive {row.uri}")
    erased = conn.execute(sa.text("SELECT 1 FROM erased_payloads WHERE payload_id = :p"),
                          {"p": payload_id}).scalar()
    return codec.canonical_json(ERASED) if erased else None

