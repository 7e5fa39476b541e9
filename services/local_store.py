"""Objects as files under one directory: the embedded default, and what tests and single hosts use."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path, PurePosixPath
from typing import Any, TypeVar
from urllib.parse import unquote, urlparse

from services.errors import ObjectStoreError
from services.store_types import CHUNK_SIZE, STANDARD, ObjectInfo, check_storage_class

T = TypeVar("T")


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
            "storage_class": check_storage_class(storage_class or STANDARD),
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
        sidecar["storage_class"] = check_storage_class(storage_class)
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
