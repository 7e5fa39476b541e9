"""One interface for large payloads and archives: a local directory or S3 through boto3."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Protocol, runtime_checkable
from urllib.parse import unquote, urlparse

from services.errors import ObjectStoreError
from services.local_store import LocalObjectStore
from services.s3_store import S3ObjectStore
from services.store_types import CHUNK_SIZE, STANDARD, STORAGE_CLASSES, ObjectInfo

__all__ = ["CHUNK_SIZE", "STANDARD", "STORAGE_CLASSES", "LocalObjectStore", "ObjectInfo", "ObjectStore",
           "S3ObjectStore", "open_store"]


@runtime_checkable
class ObjectStore(Protocol):
    """Where payloads above the in-database limit and archives live."""

    def put(
        self,
        key: str,
        data: bytes,
        *,
        storage_class: str | None = None,
        metadata: dict[str, str] | None = None,
    ) -> str:
        """Store `data` under `key` and return its URI."""
        ...

    def get(self, uri: str) -> bytes:
        """Return the bytes of an object."""
        ...

    def iter_bytes(self, uri: str, *, chunk_size: int = CHUNK_SIZE) -> Iterator[bytes]:
        """Yield an object's bytes in chunks, for objects too large to hold twice."""
        ...

    def delete(self, uri: str) -> None:
        """Delete an object; deleting a missing object is not an error."""
        ...

    def exists(self, uri: str) -> bool:
        """Return whether the object exists."""
        ...

    def head(self, uri: str) -> ObjectInfo:
        """Return size, storage class and metadata of an object."""
        ...

    def size(self, uri: str) -> int:
        """Return the size of an object in bytes."""
        ...

    def list(self, prefix: str = "") -> list[str]:
        """Return the URIs of the objects whose key starts with `prefix`, sorted."""
        ...

    def uri_for(self, key: str) -> str:
        """Return the URI an object stored under `key` has."""
        ...

    def storage_class(self, uri: str) -> str | None:
        """Return the storage class of an object ("STANDARD" by default)."""
        ...

    def set_storage_class(self, uri: str, storage_class: str) -> None:
        """Move an object to another storage class."""
        ...

    def set_legal_hold(self, uri: str, on: bool) -> bool:
        """Set or clear a legal hold; return False when the store cannot hold objects."""
        ...


def open_store(url: str, *, local_root: Path, endpoint_url: str = "", region: str = "us-east-1") -> ObjectStore:
    """Open the store a setting names: "" for `local_root`, `file:///dir` or `s3://bucket/prefix`."""
    parsed = urlparse(url)
    if not url:
        return LocalObjectStore(local_root)
    if parsed.scheme == "file":
        return LocalObjectStore(Path(unquote(parsed.path)))
    if parsed.scheme == "s3" and parsed.netloc:
        store = S3ObjectStore(parsed.netloc, parsed.path.strip("/"), endpoint_url=endpoint_url or None, region=region)
        store.ensure_bucket()
        return store
    raise ObjectStoreError(f"unsupported object store URL {url!r}: use '', file:///dir or s3://bucket/prefix")
