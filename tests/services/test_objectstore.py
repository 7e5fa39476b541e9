"""The object store behaves the same on a local directory and on S3 (moto on loopback)."""

from __future__ import annotations

import os
import random
import uuid
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest

from services import codec, fake_data, masking
from services.errors import ObjectStoreError
from services.objectstore import LocalObjectStore, ObjectStore, S3ObjectStore, open_store


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ObjectStore]:
    if request.param == "local":
        yield LocalObjectStore(tmp_path / "objects")
        return
    endpoint = request.getfixturevalue("s3_server")
    # One bucket per test: the moto server lives for the whole session.
    yield open_store(f"s3://flowledger-{uuid.uuid4().hex[:12]}/payloads", local_root=tmp_path, endpoint_url=endpoint)


@pytest.fixture
def s3_client(s3_server: str):
    return boto3.client("s3", endpoint_url=s3_server, region_name="us-east-1")


def test_a_5_mb_payload_round_trips_byte_identical(store: ObjectStore) -> None:
    data = os.urandom(5 * 1024 * 1024)
    uri = store.put("big/payload.bin", data)
    assert store.get(uri) == data
    assert b"".join(store.iter_bytes(uri, chunk_size=1024 * 1024)) == data
    assert store.size(uri) == len(data)


def test_put_returns_a_uri_of_the_stores_scheme(store: ObjectStore) -> None:
    uri = store.put("a/b.json", b"{}")
    assert uri.startswith("file://" if isinstance(store, LocalObjectStore) else "s3://")
    assert uri == store.uri_for("a/b.json")


def test_a_missing_object_raises_object_store_error(store: ObjectStore) -> None:
    uri = store.uri_for("never/written.bin")
    with pytest.raises(ObjectStoreError):
        store.get(uri)
    with pytest.raises(ObjectStoreError):
        store.head(uri)
    assert store.exists(uri) is False


def test_delete_removes_the_object_and_tolerates_a_second_delete(store: ObjectStore) -> None:
    uri = store.put("gone.bin", b"x")
    assert store.exists(uri)
    store.delete(uri)
    store.delete(uri)
    assert not store.exists(uri)


def test_list_returns_only_objects_under_the_prefix_sorted(store: ObjectStore) -> None:
    uris = [
        store.put(key, b"x", storage_class="STANDARD_IA")
        for key in ("archive/2026/02.parquet", "archive/2026/01.parquet", "payloads/x.zst")
    ]
    assert store.list("archive/") == sorted(uris[:2])
    assert store.list() == sorted(uris)


def test_metadata_is_kept_with_the_object(store: ObjectStore) -> None:
    uri = store.put("meta.bin", b"x", metadata={"sha256": codec.sha256_hex(b"x")})
    assert store.head(uri).metadata == {"sha256": codec.sha256_hex(b"x")}


def test_objects_start_in_standard_unless_told_otherwise(store: ObjectStore) -> None:
    assert store.storage_class(store.put("plain.bin", b"x")) == "STANDARD"
    assert store.storage_class(store.put("ia.bin", b"x", storage_class="STANDARD_IA")) == "STANDARD_IA"


def test_changing_the_storage_class_keeps_the_bytes(store: ObjectStore) -> None:
    uri = store.put("tier.bin", b"payload", storage_class="STANDARD_IA", metadata={"kind": "archive"})
    store.set_storage_class(uri, "GLACIER_IR")
    store.set_storage_class(uri, "GLACIER_IR")  # already there: a no-op, not an S3 error
    assert store.storage_class(uri) == "GLACIER_IR"
    assert store.get(uri) == b"payload"
    assert store.head(uri).metadata == {"kind": "archive"}


def test_an_unknown_storage_class_is_refused(store: ObjectStore) -> None:
    with pytest.raises(ObjectStoreError):
        store.put("x.bin", b"x", storage_class="COLD_AS_ICE")


def test_legal_hold_on_a_store_without_object_lock_returns_false(store: ObjectStore) -> None:
    uri = store.put("hold.bin", b"x")
    assert store.set_legal_hold(uri, True) is False


def test_storage_class_change_is_visible_to_s3_head_object(s3_server: str, s3_client, tmp_path: Path) -> None:
    store = open_store("s3://flowledger-tiering/archives", local_root=tmp_path, endpoint_url=s3_server)
    uri = store.put("2026/01.parquet", b"rows", storage_class="STANDARD_IA")
    assert (
        s3_client.head_object(Bucket="flowledger-tiering", Key="archives/2026/01.parquet")["StorageClass"]
        == "STANDARD_IA"
    )
    store.set_storage_class(uri, "GLACIER_IR")
    head = s3_client.head_object(Bucket="flowledger-tiering", Key="archives/2026/01.parquet")
    assert head["StorageClass"] == "GLACIER_IR"


def test_legal_hold_on_an_object_lock_bucket_returns_true(s3_server: str, s3_client) -> None:
    s3_client.create_bucket(Bucket="flowledger-locked", ObjectLockEnabledForBucket=True)
    store = S3ObjectStore("flowledger-locked", "evidence", endpoint_url=s3_server)
    uri = store.put("run-42.json", b"{}")
    assert store.set_legal_hold(uri, True) is True
    hold = s3_client.get_object_legal_hold(Bucket="flowledger-locked", Key="evidence/run-42.json")
    assert hold["LegalHold"]["Status"] == "ON"
    assert store.set_legal_hold(uri, False) is True


def test_large_puts_go_through_multipart_upload_and_round_trip(s3_server: str) -> None:
    store = S3ObjectStore("flowledger-multipart", endpoint_url=s3_server, multipart_threshold=1024 * 1024)
    store.ensure_bucket()
    data = os.urandom(6 * 1024 * 1024)
    assert store.get(store.put("big.bin", data, storage_class="STANDARD_IA")) == data


def test_open_store_creates_a_missing_bucket(s3_server: str, s3_client, tmp_path: Path) -> None:
    open_store("s3://flowledger-created/p", local_root=tmp_path, endpoint_url=s3_server)
    s3_client.head_bucket(Bucket="flowledger-created")


def test_open_store_with_an_empty_url_uses_the_local_directory(tmp_path: Path) -> None:
    store = open_store("", local_root=tmp_path / "store")
    assert isinstance(store, LocalObjectStore)
    assert Path(store.put("k.bin", b"x").removeprefix("file://")).parent == (tmp_path / "store").resolve()


def test_open_store_rejects_an_unknown_scheme(tmp_path: Path) -> None:
    with pytest.raises(ObjectStoreError):
        open_store("ftp://example.com/x", local_root=tmp_path)


def test_local_store_refuses_uris_and_keys_outside_its_root(tmp_path: Path) -> None:
    store = LocalObjectStore(tmp_path / "objects")
    (tmp_path / "secret.txt").write_text("no")
    with pytest.raises(ObjectStoreError):
        store.get((tmp_path / "secret.txt").as_uri())
    for key in ("../secret.txt", "/etc/passwd", "a/../../b", ""):
        with pytest.raises(ObjectStoreError):
            store.put(key, b"x")


def test_local_store_writes_leave_no_temporary_files(tmp_path: Path) -> None:
    store = LocalObjectStore(tmp_path)
    uri = store.put("a/b.bin", b"first")
    store.put("a/b.bin", b"second")
    assert store.get(uri) == b"second"
    assert [path.name for path in (tmp_path / "a").iterdir()] == ["b.bin"]


def test_local_keys_with_spaces_and_unicode_round_trip(tmp_path: Path) -> None:
    store = LocalObjectStore(tmp_path)
    uri = store.put("clients/Zoë Müller/facture 1.json", b"{}")
    assert store.get(uri) == b"{}"
    assert store.list("clients/") == [uri]


def test_a_masked_and_encoded_payload_survives_the_store_without_its_secrets(store: ObjectStore) -> None:
    payload = fake_data.trigger_payload(random.Random(7), kind="order.created")
    payload["headers"] = {"Authorization": "Bearer sk_live_abcdef123456"}
    masked = masking.mask_payload(payload, keys=["authorization"])
    blob = codec.encode(codec.canonical_json(masked))
    uri = store.put("payloads/evt.zst", blob, metadata={"sha256": codec.sha256_hex(blob)})
    stored = store.get(uri)
    assert b"sk_live_abcdef123456" not in codec.decode(stored)
    assert codec.decode(stored) == codec.canonical_json(masked)
