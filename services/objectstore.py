"""One interface for large payloads and archives: a local directory or S3 through boto3."""

from __future__ import annotations

import io
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Protocol, TypeVar, runtime_checkable
from urllib.parse import unquote, urlparse

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from services.errors import ObjectStoreError

T = TypeVar("T")

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
# Single PUTs are one round trip; above this boto's managed transfer splits into parallel parts.
MULTIPART_THRESHOLD = 64 * 1024 * 1024
# S3 answers these when the bucket has no Object Lock configuration (AWS and S3-compatible stores).
_NO_OBJECT_LOCK = {
    "InvalidRequest",
    "ObjectLockConfigurationNotFoundError",
    "NotImplemented",
    "InvalidBucketState",
    "MethodNotAllowed",
}
_MISSING = {"NoSuchKey", "404", "NotFound", "NoSuchBucket"}


@dataclass(frozen=True)
class ObjectInfo:
    """What the store knows about one object without reading it."""

    uri: str
    size: int
    storage_class: str
    metadata: dict[str, str] = field(default_factory=dict)


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


def _check_storage_class(storage_class: str) -> str:
    if storage_class not in STORAGE_CLASSES:
        raise ObjectStoreError(f"unknown storage class {storage_class!r}")
    return storage_class


class LocalObjectStore:
    """Objects as files under one directory; storage class and metadata in sidecar JSON."""

    # Sidecars live apart from the objects so that listing never returns them.
    META_DIR = ".flowledger-meta"
    TEMP_PREFIX = ".tmp-"

    def __init__(self, root: Path) -> None:
        self.root = Path(root).resolve()
        self.root.mkdir(parents=True, exist_ok=True)

    def put(
        self,
        key: str,
        data: bytes,
        *,
        storage_class: str | None = None,
        metadata: dict[str, str] | None = None,
    ) -> str:
        """Store `data` under `key` atomically and return its file:// URI."""
        path = self._path_for_key(key)
        sidecar = {
            "storage_class": _check_storage_class(storage_class or STANDARD),
            "metadata": dict(metadata or {}),
        }
        # Sidecar first: a crash in between leaves an orphan sidecar, never an object whose
        # storage class silently reads as STANDARD.
        self._write_atomically(self._sidecar(path), json.dumps(sidecar).encode())
        self._write_atomically(path, data)
        return path.as_uri()

    def get(self, uri: str) -> bytes:
        """Return the bytes of an object."""
        path = self._existing(uri)
        return self._io(uri, path.read_bytes)

    def iter_bytes(self, uri: str, *, chunk_size: int = CHUNK_SIZE) -> Iterator[bytes]:
        """Yield an object's bytes in chunks."""
        path = self._existing(uri)
        with self._io(uri, lambda: path.open("rb")) as handle:
            while chunk := handle.read(chunk_size):
                yield chunk

    def delete(self, uri: str) -> None:
        """Delete an object and its sidecar; a missing object is not an error."""
        path = self._path_for_uri(uri)
        self._io(uri, lambda: path.unlink(missing_ok=True))
        self._io(uri, lambda: self._sidecar(path).unlink(missing_ok=True))

    def exists(self, uri: str) -> bool:
        """Return whether the object exists."""
        return self._path_for_uri(uri).is_file()

    def head(self, uri: str) -> ObjectInfo:
        """Return size, storage class and metadata of an object."""
        path = self._existing(uri)
        sidecar = self._read_sidecar(path)
        return ObjectInfo(
            uri=path.as_uri(),
            size=path.stat().st_size,
            storage_class=sidecar.get("storage_class", STANDARD),
            metadata=sidecar.get("metadata", {}),
        )

    def size(self, uri: str) -> int:
        """Return the size of an object in bytes."""
        return self._existing(uri).stat().st_size

    def list(self, prefix: str = "") -> list[str]:
        """Return the URIs of the objects whose key starts with `prefix`, sorted."""
        found = []
        for directory, subdirs, files in os.walk(self.root):
            subdirs[:] = [name for name in subdirs if name != self.META_DIR]
            for name in files:
                path = Path(directory, name)
                key = path.relative_to(self.root).as_posix()
                if not name.startswith(self.TEMP_PREFIX) and key.startswith(prefix):
                    found.append(path.as_uri())
        return sorted(found)

    def uri_for(self, key: str) -> str:
        """Return the URI an object stored under `key` has."""
        return self._path_for_key(key).as_uri()

    def storage_class(self, uri: str) -> str | None:
        """Return the storage class recorded in the object's sidecar."""
        return self.head(uri).storage_class

    def set_storage_class(self, uri: str, storage_class: str) -> None:
        """Record a new storage class; bytes do not move on a local disk."""
        path = self._existing(uri)
        sidecar = self._read_sidecar(path)
        sidecar["storage_class"] = _check_storage_class(storage_class)
        self._write_atomically(self._sidecar(path), json.dumps(sidecar).encode())

    def set_legal_hold(self, uri: str, on: bool) -> bool:
        """Return False: a directory cannot stop anyone deleting a file."""
        self._existing(uri)
        return False

    def _path_for_key(self, key: str) -> Path:
        parts = PurePosixPath(key).parts
        if (
            not key
            or key.startswith("/")
            or "\\" in key
            or parts[0] == self.META_DIR
            or any(part in (".", "..") or part.startswith(self.TEMP_PREFIX) for part in parts)
        ):
            raise ObjectStoreError(f"invalid object key {key!r}")
        return self.root.joinpath(*parts)

    def _path_for_uri(self, uri: str) -> Path:
        parsed = urlparse(uri)
        if parsed.scheme != "file":
            raise ObjectStoreError(f"not a local object URI: {uri!r}")
        path = Path(unquote(parsed.path)).resolve()
        # Refuse URIs outside the root: a URI read from a row must not reach arbitrary files.
        if not path.is_relative_to(self.root) or path == self.root:
            raise ObjectStoreError(f"{uri!r} is outside the object store at {self.root}")
        return self._path_for_key(path.relative_to(self.root).as_posix())

    def _existing(self, uri: str) -> Path:
        path = self._path_for_uri(uri)
        if not path.is_file():
            raise ObjectStoreError(f"no such object: {uri}")
        return path

    def _sidecar(self, path: Path) -> Path:
        return self.root / self.META_DIR / f"{path.relative_to(self.root).as_posix()}.json"

    def _read_sidecar(self, path: Path) -> dict[str, Any]:
        sidecar = self._sidecar(path)
        if not sidecar.is_file():
            return {}
        return json.loads(sidecar.read_text())

    def _write_atomically(self, path: Path, data: bytes) -> None:
        def write() -> None:
            path.parent.mkdir(parents=True, exist_ok=True)
            handle, temp = tempfile.mkstemp(dir=path.parent, prefix=self.TEMP_PREFIX)
            try:
                with os.fdopen(handle, "wb") as stream:
                    stream.write(data)
                    stream.flush()
                    os.fsync(stream.fileno())
                os.replace(temp, path)
            except BaseException:
                Path(temp).unlink(missing_ok=True)
                raise

        self._io(path.as_uri(), write)

    @staticmethod
    def _io(uri: str, action: Callable[[], T]) -> T:
        try:
            return action()
        except OSError as exc:
            raise ObjectStoreError(f"object store I/O failed for {uri}: {exc}") from exc


class S3ObjectStore:
    """Objects in one S3 bucket (any S3-compatible endpoint) under a key prefix."""

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        endpoint_url: str | None = None,
        region: str = "us-east-1",
        client: Any = None,
        multipart_threshold: int = MULTIPART_THRESHOLD,
    ) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.region = region
        self.multipart_threshold = multipart_threshold
        self.client = client or boto3.client(
            "s3", endpoint_url=endpoint_url, region_name=region, config=_client_config(endpoint_url)
        )

    def ensure_bucket(self) -> None:
        """Create the bucket if it does not exist yet."""
        try:
            self.client.head_bucket(Bucket=self.bucket)
            return
        except ClientError as exc:
            if _code(exc) not in _MISSING:
                raise ObjectStoreError(f"cannot reach bucket {self.bucket}: {exc}") from exc
        # us-east-1 is the one region that rejects an explicit LocationConstraint.
        extra = {} if self.region == "us-east-1" else {"CreateBucketConfiguration": {"LocationConstraint": self.region}}
        with _errors(f"s3://{self.bucket}"):
            self.client.create_bucket(Bucket=self.bucket, **extra)

    def put(
        self,
        key: str,
        data: bytes,
        *,
        storage_class: str | None = None,
        metadata: dict[str, str] | None = None,
    ) -> str:
        """Store `data` under `key` and return its s3:// URI."""
        uri = self.uri_for(key)
        extra: dict[str, Any] = {}
        if storage_class:
            extra["StorageClass"] = _check_storage_class(storage_class)
        if metadata:
            extra["Metadata"] = dict(metadata)
        with _errors(uri):
            if len(data) < self.multipart_threshold:
                self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data, **extra)
            else:
                self.client.upload_fileobj(io.BytesIO(data), self.bucket, self._key(key), ExtraArgs=extra)
        return uri

    def get(self, uri: str) -> bytes:
        """Return the bytes of an object."""
        bucket, key = _split_s3_uri(uri)
        with _errors(uri):
            return self.client.get_object(Bucket=bucket, Key=key)["Body"].read()

    def iter_bytes(self, uri: str, *, chunk_size: int = CHUNK_SIZE) -> Iterator[bytes]:
        """Yield an object's bytes in chunks."""
        bucket, key = _split_s3_uri(uri)
        with _errors(uri):
            body = self.client.get_object(Bucket=bucket, Key=key)["Body"]
            yield from body.iter_chunks(chunk_size)

    def delete(self, uri: str) -> None:
        """Delete an object; a missing object is not an error."""
        bucket, key = _split_s3_uri(uri)
        with _errors(uri):
            self.client.delete_object(Bucket=bucket, Key=key)

    def exists(self, uri: str) -> bool:
        """Return whether the object exists."""
        try:
            self.head(uri)
        except ObjectStoreError as exc:
            if isinstance(exc.__cause__, ClientError) and _code(exc.__cause__) in _MISSING:
                return False
            raise
        return True

    def head(self, uri: str) -> ObjectInfo:
        """Return size, storage class and metadata of an object."""
        bucket, key = _split_s3_uri(uri)
        with _errors(uri):
            head = self.client.head_object(Bucket=bucket, Key=key)
        # S3 omits StorageClass for STANDARD objects.
        return ObjectInfo(
            uri=uri,
            size=head["ContentLength"],
            storage_class=head.get("StorageClass", STANDARD),
            metadata=head.get("Metadata", {}),
        )

    def size(self, uri: str) -> int:
        """Return the size of an object in bytes."""
        return self.head(uri).size

    def list(self, prefix: str = "") -> list[str]:
        """Return the URIs of the objects whose key starts with `prefix`, sorted."""
        paginator = self.client.get_paginator("list_objects_v2")
        found = []
        with _errors(f"s3://{self.bucket}/{self._key(prefix)}"):
            for page in paginator.paginate(Bucket=self.bucket, Prefix=self._key(prefix)):
                found.extend(f"s3://{self.bucket}/{item['Key']}" for item in page.get("Contents", []))
        return sorted(found)

    def uri_for(self, key: str) -> str:
        """Return the URI an object stored under `key` has."""
        if not key or key.startswith("/"):
            raise ObjectStoreError(f"invalid object key {key!r}")
        return f"s3://{self.bucket}/{self._key(key)}"

    def storage_class(self, uri: str) -> str | None:
        """Return the storage class of an object ("STANDARD" by default)."""
        return self.head(uri).storage_class

    def set_storage_class(self, uri: str, storage_class: str) -> None:
        """Move an object to another storage class by copying it onto itself."""
        _check_storage_class(storage_class)
        if self.storage_class(uri) == storage_class:
            return  # S3 rejects a self-copy that changes nothing
        bucket, key = _split_s3_uri(uri)
        with _errors(uri):
            # The managed copy switches to multipart above 5 GB, where copy_object stops working.
            self.client.copy(
                {"Bucket": bucket, "Key": key},
                bucket,
                key,
                ExtraArgs={"StorageClass": storage_class, "MetadataDirective": "COPY"},
            )

    def set_legal_hold(self, uri: str, on: bool) -> bool:
        """Set or clear an Object Lock legal hold; return False when the bucket has no Object Lock."""
        bucket, key = _split_s3_uri(uri)
        try:
            self.client.put_object_legal_hold(Bucket=bucket, Key=key, LegalHold={"Status": "ON" if on else "OFF"})
        except ClientError as exc:
            if _code(exc) in _NO_OBJECT_LOCK:
                return False
            raise ObjectStoreError(f"legal hold failed for {uri}: {exc}") from exc
        except BotoCoreError as exc:
            raise ObjectStoreError(f"legal hold failed for {uri}: {exc}") from exc
        return True

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key


def _client_config(endpoint_url: str | None) -> Config:
    # Path-style because S3-compatible endpoints (MinIO, moto, Ceph) rarely have wildcard DNS.
    return Config(
        retries={"max_attempts": 5, "mode": "standard"},
        connect_timeout=5,
        read_timeout=60,
        s3={"addressing_style": "path"} if endpoint_url else {},
    )


def _split_s3_uri(uri: str) -> tuple[str, str]:
    parsed = urlparse(uri)
    if parsed.scheme != "s3" or not parsed.netloc or not parsed.path.strip("/"):
        raise ObjectStoreError(f"not an S3 object URI: {uri!r}")
    return parsed.netloc, parsed.path.lstrip("/")


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


@contextmanager
def _errors(uri: str) -> Iterator[None]:
    """Turn boto errors into ObjectStoreError naming the URI."""
    try:
        yield
    except ClientError as exc:
        if _code(exc) in _MISSING:
            raise ObjectStoreError(f"no such object: {uri}") from exc
        raise ObjectStoreError(f"object store request failed for {uri}: {exc}") from exc
    except BotoCoreError as exc:
        raise ObjectStoreError(f"object store request failed for {uri}: {exc}") from exc
