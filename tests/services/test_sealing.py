"""Seals: Merkle roots over every ledger row per closed hour, chained; verify names tampered rows; proofs."""
from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from services import admin_audit, merkle, recording, seal_verify, sealing, step_recording
from services.auth import standard_webhook_signature, take
from services.errors import RateLimited
from services.objectstore import LocalObjectStore
from services.payloads import PayloadConfig
from services.recording import NewExecution
from services.step_recording import StepAttempt


@pytest.fixture
def sealed(fresh_database, tmp_path):
    """A database with one finished execution, sealed; returns (database, store, cfg, ids)."""
    fresh_database.migrate()
    store = LocalObjectStore(tmp_path / "objects")
    cfg = PayloadConfig(store=store, train_dictionaries=False)
    with fresh_database.writer() as conn:
        record = recording.create_execution(conn, cfg, NewExecution(workflow_id="wf-seal", trigger_payload={"a": 1}))
        recording.start_execution(conn, execution_id=record.execution_id)
        step = step_recording.record_step(conn, cfg, execution_id=record.execution_id, workflow_id="wf-seal",
                                          attempt=StepAttempt(step_name="charge", step_type="action", seq=1,
                                                              status="completed", input={"amount": 10},
                                                              output={"charged": True, "id": "ch_123"}))
        recording.finish_execution(conn, execution_id=record.execution_id, status="completed")
        admin_audit.record(conn, actor="ada", action="legal_hold.set", target="wf-seal")
    with fresh_database.writer() as conn:
        created = sealing.seal_closed_periods(conn, store, now=datetime.now(UTC) + timedelta(hours=2))
    assert created
    return fresh_database, store, cfg, {"execution": record.execution_id, "step": step}


def _verify(database, store, cfg):
    with database.reader() as conn:
        return seal_verify.verify(conn, store=store, payloads=cfg)


def test_an_untouched_ledger_verifies(sealed):
    database, store, cfg, _ = sealed
    report = _verify(database, store, cfg)
    assert report.ok, (report.mismatches, report.problems)
    assert report.rows_checked >= 8


def test_sealing_twice_adds_no_seal_for_periods_already_sealed(sealed):
    database, store, _, _ = sealed
    with database.writer() as conn:
        assert sealing.seal_closed_periods(conn, store, now=datetime.now(UTC) + timedelta(hours=2)) == []


def test_seals_are_chained_and_published_to_the_object_store(sealed):
    database, store, _, _ = sealed
    with database.reader() as conn:
        seals = conn.execute(sa.text("SELECT root, prev_root, uri FROM seals ORDER BY period_start")).all()
    for before, after in zip(seals, seals[1:], strict=False):
        assert after.prev_root == before.root
    assert json.loads(store.get(seals[-1].uri))["root"] == seals[-1].root


def test_verify_names_a_changed_step_output_a_deleted_audit_event_and_a_forged_execution(sealed):
    database, store, cfg, ids = sealed
    forged = uuid.uuid4()
    with database.admin() as conn:  # a PostgreSQL superuser, bypassing every grant
        sealed_at = conn.execute(sa.text("SELECT period_start FROM seals WHERE row_count > 0")).scalar()
        # Flip the lowest bit of byte 12 of the stored (compressed) output.
        conn.execute(sa.text("UPDATE payloads SET data = set_byte(data, 11, get_byte(data, 11) # 1) "
                             "WHERE payload_id = :p"), {"p": ids["step"].output_payload_id})
        audit_id = conn.execute(sa.text("DELETE FROM execution_audit_events WHERE execution_id = :e "
                                        "AND event_type = 'COMPLETED' RETURNING id"), {"e": ids["execution"]}).scalar()
        conn.execute(sa.text(
            "INSERT INTO executions (execution_id, created_at, workflow_id, trigger_source, trace_id, root_span_id) "
            "VALUES (:id, :at, 'wf-seal', 'manual', repeat('a', 32), repeat('b', 16))"),
            {"id": forged, "at": sealed_at + timedelta(minutes=30)})
    report = _verify(database, store, cfg)
    found = {(m["table"], m["key"], m["change"]) for m in report.mismatches}
    assert ("payloads", str(ids["step"].output_payload_id), "changed") in found
    assert ("execution_audit_events", str(audit_id), "removed") in found
    assert ("executions", str(forged), "added") in found
    assert not report.ok


def test_a_changed_row_in_the_leaves_or_a_rewritten_seal_breaks_the_chain(sealed):
    database, store, cfg, _ = sealed
    with database.admin() as conn:
        conn.execute(sa.text("UPDATE seals SET root = repeat('0', 64) "
                             "WHERE seal_id = (SELECT min(seal_id) FROM seals)"))
    problems = _verify(database, store, cfg).problems
    assert any("root" in p["problem"] for p in problems)


def test_an_inclusion_proof_checks_one_execution_against_its_seal(sealed):
    database, _, _, ids = sealed
    with database.reader() as conn:
        proof = seal_verify.inclusion_proof(conn, ids["execution"])
    assert proof["sealed"] and proof["valid"]
    row = next(r for r in proof["rows"] if r["table"] == "executions")
    assert merkle.verify_proof(bytes.fromhex(row["leaf"]), row["path"], row["merkle_root"])
    with database.admin() as conn:
        conn.execute(sa.text("UPDATE steps SET error_message = 'edited' WHERE execution_id = :e"),
                     {"e": ids["execution"]})
    with database.reader() as conn:
        assert seal_verify.inclusion_proof(conn, ids["execution"])["valid"] is False


@pytest.mark.parametrize("count", range(1, 10))
def test_every_leaf_has_a_proof_that_folds_to_the_root(count):
    leaves = [merkle.leaf_hash(str(i).encode()) for i in range(count)]
    root = merkle.root(leaves)
    for index in range(count):
        assert merkle.verify_proof(leaves[index], merkle.proof(leaves, index), root)
    assert not merkle.verify_proof(merkle.leaf_hash(b"other"), merkle.proof(leaves, 0), root)


def test_standard_webhook_signature_matches_the_specification_example():
    # The example from the Standard Webhooks reference libraries.
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    signature = standard_webhook_signature(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", "1614265330",
                                           b'{"test": 2432232314}')
    assert signature == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_the_token_bucket_refills_with_time(fresh_database):
    fresh_database.migrate()
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    with fresh_database.writer() as conn:
        for _ in range(2):
            take(conn, bucket="ingest:a", rate=1, burst=2, now=t0)
    with pytest.raises(RateLimited) as refused, fresh_database.writer() as conn:
        take(conn, bucket="ingest:a", rate=1, burst=2, now=t0)
    assert refused.value.retry_after == 1
    with fresh_database.writer() as conn:
        take(conn, bucket="ingest:a", rate=1, burst=2, now=t0 + timedelta(seconds=1))
        take(conn, bucket="ingest:b", rate=1, burst=2, now=t0)


def test_seals_published_to_an_object_lock_bucket_get_compliance_retention(fresh_database, s3_server):
    import boto3

    from services.objectstore import S3ObjectStore

    fresh_database.migrate()
    bucket = f"seals-{uuid.uuid4().hex[:8]}"
    client = boto3.client("s3", endpoint_url=s3_server, region_name="us-east-1")
    client.create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=True)
    store = S3ObjectStore(bucket, "seals", endpoint_url=s3_server)
    cfg = PayloadConfig(store=store, train_dictionaries=False)
    with fresh_database.writer() as conn:
        recording.create_execution(conn, cfg, NewExecution(workflow_id="wf-lock"))
    with fresh_database.writer() as conn:
        sealing.seal_closed_periods(conn, store, now=datetime.now(UTC) + timedelta(hours=2), lock_days=30)
    with fresh_database.reader() as conn:
        uri = conn.execute(sa.text(
            "SELECT uri FROM seals WHERE uri IS NOT NULL ORDER BY seal_id DESC LIMIT 1")).scalar()
    key = uri.removeprefix(f"s3://{bucket}/")
    head = client.head_object(Bucket=bucket, Key=key)
    assert head["ObjectLockMode"] == "COMPLIANCE"
    assert head["ObjectLockRetainUntilDate"] > datetime.now(UTC) + timedelta(days=29)
