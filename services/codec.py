"""zstd encoding of step payloads, with optional per-workflow trained dictionaries."""

from __future__ import annotations

import hashlib
import json
import threading
from collections import OrderedDict
from typing import Any

import zstandard

from services.errors import CodecError

# Level 3 (zstd's default) with a trained dictionary. Measured on services.fake_data (1–8 KB JSON,
# one core): level 1–3 compress at 250–400 MB/s and level 3 is the best ratio of that group;
# level 5 already falls to ~130 MB/s, below the 150 MB/s target, for +2% ratio; 6+ for +5%
# runs at <100 MB/s. The dictionary is what moves the ratio (3.2x -> 4.5-5x), not the level.
DEFAULT_LEVEL = 3
# 32 KB: 16 KB -> 32 KB gains ~1%, 64-110 KB gains nothing more on payloads this size, and a
# smaller dictionary is cheaper to store per workflow, to load and to keep cached per thread.
# zstd wants ~100x the dictionary size in samples: ~3 MB, i.e. some 700 payloads.
DEFAULT_DICTIONARY_SIZE = 32 * 1024
# Per thread; a compression context with a loaded dictionary weighs a few hundred KB.
MAX_CACHED_CONTEXTS = 64


def canonical_json(value: Any) -> bytes:
    """Serialise a JSON-like value compactly as UTF-8, keeping key order as given."""
    return canonical_text(value).encode("utf-8")


def canonical_text(value: Any) -> str:
    """canonical_json before its UTF-8 encoding."""
    # Key order is kept because it is what the workflow produced; sorting would make the
    # stored payload differ from what the user saw. allow_nan=False keeps the output real JSON.
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def sha256_hex(data: bytes) -> str:
    """Return the hex SHA-256 of `data`."""
    return hashlib.sha256(data).hexdigest()


def train_dictionary(
    samples: list[bytes],
    *,
    size: int = DEFAULT_DICTIONARY_SIZE,
    dict_id: int = 0,
    level: int = DEFAULT_LEVEL,
) -> bytes:
    """Train a zstd dictionary on sample payloads and return its bytes."""
    # Pass dict_id from a database sequence: random 32-bit ids collide once there are
    # thousands of workflows, and the caches below key on the id.
    if not samples:
        raise CodecError("cannot train a dictionary without samples")
    try:
        trained = zstandard.train_dictionary(size, samples, dict_id=dict_id, level=level)
    except zstandard.ZstdError as exc:
        raise CodecError(f"dictionary training failed on {len(samples)} samples: {exc}") from exc
    return trained.as_bytes()


def load_dictionary(data: bytes) -> zstandard.ZstdCompressionDict:
    """Return a dictionary object from bytes produced by `train_dictionary`."""
    return zstandard.ZstdCompressionDict(data, dict_type=zstandard.DICT_TYPE_FULLDICT)


def dictionary_id(dictionary: zstandard.ZstdCompressionDict | bytes) -> int:
    """Return the id zstd records in frames compressed with this dictionary."""
    if isinstance(dictionary, bytes | bytearray | memoryview):
        dictionary = load_dictionary(bytes(dictionary))
    return dictionary.dict_id()


def frame_dictionary_id(blob: bytes) -> int:
    """Return the dictionary id an encoded payload needs, 0 when it needs none."""
    try:
        return zstandard.get_frame_parameters(blob).dict_id
    except zstandard.ZstdError as exc:
        raise CodecError(f"not a zstd frame: {exc}") from exc


class Codec:
    """Encode and decode payloads, reusing one (de)compressor per dictionary and thread."""

    def __init__(self, *, max_cached: int = MAX_CACHED_CONTEXTS) -> None:
        # zstandard contexts are not thread-safe; one cache per thread avoids a lock on the
        # hot path, at the cost of one context per thread and dictionary.
        self._local = threading.local()
        self._max_cached = max_cached

    def encode(
        self,
        data: bytes,
        *,
        dictionary: zstandard.ZstdCompressionDict | None = None,
        level: int = DEFAULT_LEVEL,
    ) -> bytes:
        """Compress `data` into one self-describing zstd frame."""
        compressor = self._context("c", dictionary, level)
        return compressor.compress(data)

    def decode(self, blob: bytes, *, dictionary: zstandard.ZstdCompressionDict | None = None) -> bytes:
        """Decompress a frame made by `encode`, with the same dictionary."""
        needed = frame_dictionary_id(blob)
        given = dictionary.dict_id() if dictionary is not None else 0
        if needed != given:
            raise CodecError(f"payload needs dictionary {needed or 'none'}, got {given or 'none'}")
        decompressor = self._context("d", dictionary, 0)
        try:
            return decompressor.decompress(blob)
        except zstandard.ZstdError as exc:
            raise CodecError(f"corrupt payload: {exc}") from exc

    def _context(
        self, kind: str, dictionary: zstandard.ZstdCompressionDict | None, level: int
    ) -> zstandard.ZstdCompressor | zstandard.ZstdDecompressor:
        dict_id = dictionary.dict_id() if dictionary is not None else 0
        if dictionary is not None and dict_id == 0:
            return _new_context(kind, dictionary, level)  # raw-content dictionary: nothing to key on
        cache = self._cache()
        key = (kind, dict_id, level)
        entry = cache.get(key)
        if entry is not None and not _same_dictionary(entry[0], dictionary):
            raise CodecError(f"two different dictionaries share id {dict_id}")
        if entry is None:
            entry = (dictionary, _new_context(kind, dictionary, level))
            cache[key] = entry
            if len(cache) > self._max_cached:
                cache.popitem(last=False)
        cache.move_to_end(key)
        return entry[1]

    def _cache(self) -> OrderedDict:
        cache = getattr(self._local, "cache", None)
        if cache is None:
            cache = self._local.cache = OrderedDict()
        return cache


def _new_context(
    kind: str, dictionary: zstandard.ZstdCompressionDict | None, level: int
) -> zstandard.ZstdCompressor | zstandard.ZstdDecompressor:
    if kind == "d":
        return zstandard.ZstdDecompressor(dict_data=dictionary)
    # Content size lets decode allocate exactly once; the checksum (4 bytes, <1% of a typical
    # frame) catches corruption; the dictionary id makes a frame say which dictionary it needs,
    # so decoding with the wrong one fails loudly instead of returning garbage.
    return zstandard.ZstdCompressor(
        level=level, dict_data=dictionary, write_content_size=True, write_checksum=True, write_dict_id=True
    )


def _same_dictionary(cached: zstandard.ZstdCompressionDict | None, given: zstandard.ZstdCompressionDict | None) -> bool:
    if cached is given:
        return True
    if cached is None or given is None:
        return False
    # A different object with the same id is normal (reloaded from the database); only
    # different content under the same id is an error.
    return cached.as_bytes() == given.as_bytes()


_default = Codec()


def encode(
    data: bytes, *, dictionary: zstandard.ZstdCompressionDict | None = None, level: int = DEFAULT_LEVEL
) -> bytes:
    """Compress `data` into one zstd frame using the shared per-thread contexts."""
    return _default.encode(data, dictionary=dictionary, level=level)


def decode(blob: bytes, *, dictionary: zstandard.ZstdCompressionDict | None = None) -> bytes:
    """Decompress a frame made by `encode`, with the same dictionary."""
    return _default.decode(blob, dictionary=dictionary)
