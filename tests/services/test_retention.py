"""Retention against real PostgreSQL and moto S3: archive, tier to Glacier IR, expire, hold, drop partitions."""
from __future__ import annotations

import dataclasses
import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import boto3
import pytest
import sqlalchemy as sa
import zstandard

from services import archive_reader, archiving, codec, inspection, retention
from services.db import Database
from services.errors import CodecError
from services.payloads import PayloadConfig
from services.retention import RetentionOptions
from tests.services.jobs_factories import counts, make_workflow, record_run, s3_payloads

AHEAD = timedelta(days=400)


@pytest.fixture
def db(fresh_database: Database) -> Database:
    """Retention is global (every workflow, every partition): each test gets a database of its own."""
    fresh_database.migrate()
    return fresh_database


@pytest.fixture
def cfg(s3_server: str, tmp_path: Path) -> PayloadConfig:
    return s3_payloads(s3_server, tmp_path)


def _objects(cfg: PayloadConfig) -> list[str]:
    return cfg.store.list("")


def _scenario(db: Database, cfg: PayloadConfig) -> dict:
    with db.writer() as conn:
        make_workflow(conn, "hot")
        make_workflow(conn, "held", retention_days=30, legal_hold=True)
        make_workflow(conn, "rof", retention_days=30, retain_on_failure=True)
        make_workflow(conn, "short", retention_days=365)
        ids = {"hot": [record_run(conn, cfg, "hot", seed=i, size_hint=4096) for i in range(100)],
               "held": [record_run(conn, cfg, "held", seed=100 + i) for i in range(3)],
               "rof_failed": [record_run(conn, cfg, "rof", status="failed", error="boom", seed=200 + i)
                              for i in range(2)],
               "rof_ok": [record_run(conn, cfg, "rof", seed=300 + i) for i in range(2)],
               "short": [record_run(conn, cfg, "short", seed=400 + i) for i in range(2)]}
        from services import recording
        from services.recording import NewExecution

        running = recording.create_execution(conn, cfg, NewExecution(workflow_id="hot", trigger_payload={"a": 1}))
        recording.start_execution(conn, execution_id=running.execution_id)
        ids["running"] = running.execution_id
    return ids


def _snapshot(db: Database, cfg: PayloadConfig) -> tuple[dict, list[str]]:
    with db.reader() as conn:
        table_counts = {w: counts(conn, w) for w in ("hot", "held", "rof", "short")}
    return table_counts, _objects(cfg)


def test_a_dry_run_400_days_ahead_reports_the_plan_and_changes_nothing(db: Database, cfg: PayloadConfig) -> None:
    _scenario(db, cfg)
    before = _snapshot(db, cfg)
    report = retention.prune(db, cfg, now=datetime.now(UTC) + AHEAD, options=RetentionOptions(dry_run=True))
    assert _snapshot(db, cfg) == before
    assert report.workflows["hot"]["archive_executions"] == 100
    assert report.workflows["short"]["expire_executions"] == 2
    assert report.workflows["rof"]["expire_executions"] == 2  # the two successes; failures are kept
    assert report.workflows["held"]["legal_hold_kept"] == 3
    assert report.archives_written == 0 and report.partitions_dropped == []


def test_400_days_ahead_hot_rows_are_archived_then_moved_to_glacier_ir(
        db: Database, cfg: PayloadConfig, s3_server: str) -> None:
    ids = _scenario(db, cfg)
    with db.reader() as conn:
        before = {e: inspection.get_execution(conn, cfg, e) for e in ids["hot"][:5]}
    report = retention.prune(db, cfg, now=datetime.now(UTC) + AHEAD)

    with db.reader() as conn:
        after = counts(conn, "hot")
        archived = conn.execute(sa.text(
            "SELECT count(*) FROM execution_state WHERE workflow_id = 'hot' AND archived_uri IS NOT NULL")).scalar()
        running_uri = conn.execute(sa.text("SELECT archived_uri FROM execution_state WHERE execution_id = :e"),
                                   {"e": ids["running"]}).scalar()
        manifest = conn.execute(sa.text(
            "SELECT archive_id, uri, size_bytes, storage_class, execution_count, manifest FROM archive_manifests "
            "WHERE workflow_id = 'hot'")).one()
        tier = conn.execute(sa.text("SELECT storage_class FROM archive_tier_changes WHERE archive_id = :a"),
                            {"a": manifest.archive_id}).scalar_one()
        remaining_payloads = conn.execute(sa.text(
            "SELECT count(*) FROM payloads WHERE execution_id = ANY(:ids)"), {"ids": ids["hot"]}).scalar()
    assert archived == 100 and running_uri is None  # an unfinished execution is never archived
    assert remaining_payloads == 0 and after["executions"] == 101 and after["steps"] == 200
    assert manifest.storage_class == "STANDARD_IA" and manifest.execution_count == 100
    assert manifest.manifest["payload_count"] == 400 and len(manifest.manifest["execution_sha256"]) == 100
    assert manifest.size_bytes > 2 * 128 * 1024, "archive objects must be well above S3's 128 KB IA minimum"
    assert tier == "GLACIER_IR" and report.tiered_to_glacier >= 1
    bucket, key = manifest.uri.removeprefix("s3://").split("/", 1)
    head = boto3.client("s3", endpoint_url=s3_server, region_name="us-east-1").head_object(Bucket=bucket, Key=key)
    assert head["StorageClass"] == "GLACIER_IR"
    # The archived execution still opens, with identical payloads read back from the archive.
    archive_reader.forget(manifest.uri)
    with db.reader() as conn:
        for execution_id, original in before.items():
            again = inspection.get_execution(conn, cfg, execution_id)
            assert again["archived_uri"] == manifest.uri
            assert [(s["input"], s["output"]) for s in again["steps"]] == \
                   [(s["input"], s["output"]) for s in original["steps"]]
            assert again["trigger_payload"] == original["trigger_payload"]
    print(f"\nlongest maintainer transaction: {report.longest_transaction_ms} ms over {report.transactions}; "
          f"archive object {manifest.size_bytes} bytes")


def test_every_archived_payload_leaves_postgresql_even_beyond_one_purge_read(
        db: Database, cfg: PayloadConfig, monkeypatch: pytest.MonkeyPatch) -> None:
    ids = _scenario(db, cfg)
    monkeypatch.setattr(retention, "PURGE_CHUNK", 7)  # 100 executions with archived payloads: 15 reads

    report = retention.prune(db, cfg, now=datetime.now(UTC) + AHEAD, options=RetentionOptions(batch_size=2))

    with db.reader() as conn:
        remaining = conn.execute(sa.text(
            "SELECT count(*) FROM payloads WHERE execution_id = ANY(:ids)"), {"ids": ids["hot"]}).scalar()
    assert remaining == 0 and report.payload_rows_deleted >= 400


def test_legal_hold_and_retain_on_failure_data_survive_the_end_of_retention(db: Database, cfg: PayloadConfig) -> None:
    ids = _scenario(db, cfg)
    with db.reader() as conn:
        held_before = counts(conn, "held")
    retention.prune(db, cfg, now=datetime.now(UTC) + AHEAD)
    with db.reader() as conn:
        assert counts(conn, "held") == held_before  # not archived, not expired, not cleaned
        rof = conn.execute(sa.text("SELECT execution_id FROM execution_state WHERE workflow_id = 'rof'")).scalars()
        assert set(rof) == set(ids["rof_failed"])
        assert counts(conn, "short")["executions"] == 0
        for execution_id in ids["rof_failed"]:
            assert inspection.get_execution(conn, cfg, execution_id)["status"] == "failed"


def test_audit_events_outlive_their_deleted_execution_until_the_audit_retention(
        db: Database, cfg: PayloadConfig) -> None:
    with db.writer() as conn:
        make_workflow(conn, "brief", retention_days=30)
        execution_id = record_run(conn, cfg, "brief")
    audit_sql = sa.text("SELECT count(*) FROM execution_audit_events WHERE execution_id = :e")
    retention.prune(db, cfg, now=datetime.now(UTC) + timedelta(days=40),
                    options=RetentionOptions(audit_retention_days=60))
    with db.reader() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM executions WHERE execution_id = :e"),
                            {"e": execution_id}).scalar() == 0
        assert conn.execute(audit_sql, {"e": execution_id}).scalar() > 0
    retention.prune(db, cfg, now=datetime.now(UTC) + timedelta(days=70),
                    options=RetentionOptions(audit_retention_days=60))
    with db.reader() as conn:
        assert conn.execute(audit_sql, {"e": execution_id}).scalar() == 0


def test_a_partition_is_dropped_when_all_its_rows_are_archived_or_expired(db: Database, cfg: PayloadConfig) -> None:
    with db.writer() as conn:
        make_workflow(conn, "keep")
        make_workflow(conn, "gone", retention_days=365)
        for i in range(3):
            record_run(conn, cfg, "keep", seed=i)
            record_run(conn, cfg, "gone", seed=10 + i)
        ids = list(conn.execute(sa.text("SELECT execution_id FROM execution_state")).scalars())
    # Old rows: as admin, move this test's payloads and audit events into the partition of two months ago.
    month = (datetime.now(UTC).replace(day=1) - timedelta(days=40)).replace(day=15)
    suffix = f"_y{month:%Y}m{month:%m}"
    with db.admin() as conn:
        conn.execute(sa.text("UPDATE payloads SET created_at = :m WHERE execution_id = ANY(:ids)"),
                     {"m": month, "ids": ids})
        conn.execute(sa.text('UPDATE execution_audit_events SET "timestamp" = :m WHERE execution_id = ANY(:ids)'),
                     {"m": month, "ids": ids})
        assert conn.execute(sa.text(f"SELECT count(*) FROM payloads{suffix}")).scalar() == 24
    report = retention.prune(db, cfg, now=datetime.now(UTC) + AHEAD)
    # payloads: every row archived ("keep") or expired ("gone") -> the whole partition went at once.
    assert f"payloads{suffix}" in report.partitions_dropped
    assert f"execution_audit_events{suffix}" in report.partitions_dropped
    with db.admin() as conn:
        assert conn.execute(sa.text("SELECT to_regclass(:t)"), {"t": f"payloads{suffix}"}).scalar() is None
        now = datetime.now(UTC)
        # executions of "keep" stay as searchable metadata, so the present month's partition stays.
        assert conn.execute(sa.text("SELECT to_regclass(:t)"), {"t": f"executions_y{now:%Y}m{now:%m}"}).scalar()
    assert report.payload_rows_deleted == 0, "rows left with their partition, not one by one"


def test_a_due_partition_whose_table_stays_busy_is_left_for_the_next_run_not_waited_on(
        db: Database, cfg: PayloadConfig) -> None:
    with db.writer() as conn:
        make_workflow(conn, "gone", retention_days=365)
        ids = [record_run(conn, cfg, "gone", seed=i) for i in range(2)]
    month = (datetime.now(UTC).replace(day=1) - timedelta(days=40)).replace(day=15)
    old = f"payloads_y{month:%Y}m{month:%m}"
    with db.admin() as conn:
        conn.execute(sa.text("UPDATE payloads SET created_at = :m WHERE execution_id = ANY(:ids)"),
                     {"m": month, "ids": ids})
    # A reader in the middle of a long transaction on the old partition: DROP TABLE cannot have its lock.
    with db.admin() as reader:
        reader.execute(sa.text(f"SELECT count(*) FROM {old}")).scalar()
        report = retention.prune(db, cfg, now=datetime.now(UTC) + AHEAD)
        assert old in report.partitions_busy and old not in report.partitions_dropped
    with db.admin() as conn:
        assert conn.execute(sa.text("SELECT to_regclass(:t)"), {"t": old}).scalar() is not None
    # the reader is gone: the next run drops it
    later = retention.prune(db, cfg, now=datetime.now(UTC) + AHEAD)
    assert old in later.partitions_dropped and later.partitions_busy == []


def test_placing_a_legal_hold_records_who_and_when_in_a_new_workflow_version(db: Database, cfg: PayloadConfig) -> None:
    with db.writer() as conn:
        make_workflow(conn, "case", retention_days=30)
        record_run(conn, cfg, "case")
    retention.prune(db, cfg, now=datetime.now(UTC) + timedelta(days=20), options=RetentionOptions(hot_days=10))
    with db.writer() as conn:
        result = archiving.set_legal_hold(conn, cfg, workflow_id="case", on=True, by="counsel@example.com",
                                          reason="litigation 42")
    assert result["archives"] == 1 and result["version"] == 2
    with db.reader() as conn:
        row = conn.execute(sa.text("SELECT created_by, change_note, legal_hold FROM workflow_versions "
                                   "WHERE workflow_id = 'case' AND version = 2")).one()
    assert row.created_by == "counsel@example.com" and row.legal_hold and "litigation 42" in row.change_note
    retention.prune(db, cfg, now=datetime.now(UTC) + AHEAD)
    with db.reader() as conn:
        assert counts(conn, "case")["executions"] == 1


@pytest.mark.slow
def test_a_pruning_run_over_thousands_of_rows_keeps_every_transaction_short(db: Database, cfg: PayloadConfig) -> None:
    with db.writer() as conn:
        make_workflow(conn, "bulk-archive")
        make_workflow(conn, "bulk-expire", retention_days=30)
    started = time.perf_counter()
    for chunk in range(6):
        with db.writer() as conn:
            for i in range(250):
                record_run(conn, cfg, "bulk-archive" if i % 2 else "bulk-expire", seed=chunk * 1000 + i,
                           steps=1, size_hint=1024)
    made = time.perf_counter() - started
    report = retention.prune(db, cfg, now=datetime.now(UTC) + AHEAD, options=RetentionOptions(batch_size=200))
    with db.reader() as conn:
        assert counts(conn, "bulk-expire")["executions"] == 0
        assert counts(conn, "bulk-archive")["payloads"] == 0
    print(f"\n1500 executions (4500 payload/step rows) made in {made:.1f}s; pruning used {report.transactions} "
          f"transactions, longest {report.longest_transaction_ms} ms")
    # How long a transaction takes is the benchmark's business (python -m bench, "retention longest
    # transaction"); what the suite checks is that the work was cut into bounded batches.
    by_kind = report.transactions_by_kind
    assert by_kind["expire"] >= 750 // 200 and by_kind["archive_registration"] >= 750 // 500, by_kind


def test_the_report_times_every_transaction_by_kind_and_a_rerun_changes_nothing(
        db: Database, cfg: PayloadConfig) -> None:
    _scenario(db, cfg)
    report = retention.prune(db, cfg, now=datetime.now(UTC) + AHEAD)
    again = retention.prune(db, cfg, now=datetime.now(UTC) + AHEAD)

    by_kind, longest = report.transactions_by_kind, report.longest_transaction_ms_by_kind
    assert set(by_kind) == set(longest) and set(by_kind) <= set(retention.KINDS)
    assert {"archive_registration", "expire", "tier", "payload_purge"} <= set(by_kind)
    assert sum(by_kind.values()) == report.transactions
    assert max(longest.values()) == report.longest_transaction_ms
    as_json = json.loads(json.dumps(report.as_dict(), default=str))
    assert as_json["longest_transaction_ms_by_kind"] == longest
    assert again.archives_written == 0 and again.payload_rows_deleted == 0
    assert "archive_registration" not in again.transactions_by_kind


def test_an_archive_object_is_canonical_json_whose_execution_hashes_match(db: Database, cfg: PayloadConfig) -> None:
    with db.writer() as conn:
        make_workflow(conn, "canon")
        for i in range(3):
            record_run(conn, cfg, "canon", seed=i, trigger={"name": "Zoë ✓", "n": i})
    retention.prune(db, cfg, now=datetime.now(UTC) + AHEAD)

    with db.reader() as conn:
        uri = conn.execute(sa.text("SELECT uri FROM archive_manifests WHERE workflow_id = 'canon'")).scalar_one()
    raw = zstandard.ZstdDecompressor().decompress(cfg.store.get(uri))
    document = json.loads(raw)
    assert codec.canonical_json(document) == raw  # the bytes put together piece by piece are the canonical ones
    assert archive_reader.decode_archive(cfg.store.get(uri)) == document
    for execution in document["executions"]:
        claimed = execution.pop("sha256")
        assert codec.sha256_hex(codec.canonical_json(execution)) == claimed
        assert document["manifest"]["execution_sha256"][execution["execution_id"]] == claimed


def test_offloaded_payloads_are_registered_with_their_own_object(db: Database, cfg: PayloadConfig) -> None:
    small = dataclasses.replace(cfg, inline_max_bytes=256)
    with db.writer() as conn:
        make_workflow(conn, "offload")
        ids = [record_run(conn, small, "offload", seed=i) for i in range(2)]
    with db.reader() as conn:
        before = {(r.payload_id, r.execution_id, r.uri) for r in conn.execute(sa.text(
            "SELECT payload_id, execution_id, uri FROM payloads WHERE execution_id = ANY(:ids)"), {"ids": ids})}
        opened = {e: inspection.get_execution(conn, small, e) for e in ids}
    retention.prune(db, small, now=datetime.now(UTC) + AHEAD)

    with db.reader() as conn:
        registered = {(r.payload_id, r.execution_id, r.uri) for r in conn.execute(sa.text(
            "SELECT payload_id, execution_id, uri FROM archived_payloads WHERE execution_id = ANY(:ids)"),
            {"ids": ids})}
        assert registered == before and any(uri for _p, _e, uri in before)
        for execution_id, original in opened.items():
            again = inspection.get_execution(conn, small, execution_id)["steps"]
            assert [(s["input"], s["output"]) for s in again] == [(s["input"], s["output"]) for s in original["steps"]]


def test_an_execution_larger_than_one_purge_batch_leaves_in_several_transactions(
        db: Database, cfg: PayloadConfig, monkeypatch: pytest.MonkeyPatch) -> None:
    with db.writer() as conn:
        make_workflow(conn, "wide")
        execution_id = record_run(conn, cfg, "wide", steps=6)  # 12 step payloads at least
    monkeypatch.setattr(retention, "PURGE_ROWS_MIN", 3)
    monkeypatch.setattr(retention, "PURGE_ROWS_MAX", 3)

    report = retention.prune(db, cfg, now=datetime.now(UTC) + AHEAD, options=RetentionOptions(batch_size=1))

    with db.reader() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM payloads WHERE execution_id = :e"),
                            {"e": execution_id}).scalar() == 0
    archived = report.workflows["wide"]["archive_payloads"]
    assert archived >= 12 and report.payload_rows_deleted == archived
    assert report.transactions_by_kind["payload_purge"] >= archived // 3


def test_a_batch_size_follows_the_measured_rate_within_its_bounds() -> None:
    size = retention._BatchSize(1000, low=100, high=4000, target_ms=250)
    size.after(1000, 1000.0)  # 4x too slow
    assert size.size == 250
    size.after(250, 10.0)  # far too fast: grows, but at most twice per step
    assert size.size == 500
    size.after(500, 100_000.0)
    assert size.size == 100
    for _ in range(10):
        size.after(size.size, 1.0)
    assert size.size == 4000
    size.after(0, 5000.0)  # nothing done: nothing learnt
    assert size.size == 4000


def test_a_damaged_or_foreign_archive_object_is_refused_with_a_message_not_read_as_data() -> None:
    document = {"format": archive_reader.FORMAT, "executions": [], "events": []}
    assert archive_reader.decode_archive(archive_reader.encode_archive(document)) == document
    with pytest.raises(CodecError, match="cannot be decoded"):
        archive_reader.decode_archive(archive_reader.encode_archive(document)[:-7])  # a truncated object
    with pytest.raises(CodecError, match="cannot be decoded"):
        archive_reader.decode_archive(zstandard.ZstdCompressor().compress(b"{not json"))
    with pytest.raises(CodecError, match="unknown archive format 'someone-else/1'"):
        archive_reader.decode_archive(archive_reader.encode_archive({**document, "format": "someone-else/1"}))
