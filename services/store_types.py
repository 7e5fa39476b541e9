"""What both object stores share: storage classes, chunk size and what is known about one object."""

from __future__ import annotations

from dataclasses import dataclass, field

from services.errors import ObjectStoreError

STANDARD = "STANDARD"
STORAGE_CLASSES = frozenset(
    {
        "STANDARD",
        "REDUCED_REDUNDANCY",
        "STANDARD_IA",
        "ONEZONE_IA",
        "INTELLIGENT_TIERING",
        "GLACIER",
        "DEEP_ARCHIVE",
        "OUTPOSTS",
        "GLACIER_IR",
        "SNOW",
        "EXPRESS_ONEZONE",
    }
)
CHUNK_SIZE = 1024 * 1024


@dataclass(frozen=True)
class ObjectInfo:
    """What the store knows about one object without reading it."""

    uri: str
    size: int
    storage_class: str
    metadata: dict[str, str] = field(default_factory=dict)


def check_storage_class(storage_class: str) -> str:
    """The storage class if S3 knows it, else an ObjectStoreError."""
    if storage_class not in STORAGE_CLASSES:
        raise ObjectStoreError(f"unknown storage class {storage_class!r}")
    return storage_class
