"""Objects in one S3 bucket (AWS or any S3-compatible endpoint) through boto3."""

from __future__ import annotations

import io
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlparse

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from services.errors import ObjectStoreError
from services.store_types import CHUNK_SIZE, STANDARD, ObjectInfo, check_storage_class

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
            extra["StorageClass"] = check_storage_class(storage_class)
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
        check_storage_class(storage_class)
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
