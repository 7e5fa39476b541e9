"""The recording service: audit events with the state they describe, masked and offloaded payloads."""
import json
import logging
import os
import uuid
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from services import codec, inspection, payloads, recording, step_recording
from services.errors import Conflict
from services.objectstore import open_store
from services.payloads import PayloadConfig
from services.recording import NewExecution
from services.step_recording import StepAttempt

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
SECRET = "sk_live_do_not_store_4242"


@pytest.fixture(scope="module")
def s3_cfg(s3_server, tmp_path_factory):
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    store = open_store(f"s3://ledger-{uuid.uuid4().hex[:8]}/payloads", local_root=tmp_path_factory.mktemp("o"),
                       endpoint_url=s3_server)
    return PayloadConfig(store=store, masking_keys=("password", "api_key", "authorization"),
                         masking_paths=("customer.ssn",), train_dictionaries=False)


def _new(cfg, conn, **kw):
    return recording.create_execution(conn, cfg, NewExecution(workflow_id=kw.pop("workflow_id", "wf-rec"), **kw))


def _audit(database, execution_id):
    with database.reader() as conn:
        return inspection.audit_events(conn, execution_id)


def test_each_lifecycle_fact_writes_its_audit_event_with_metadata(database, s3_cfg):
    with database.writer() as conn:
        rec = _new(s3_cfg, conn, trigger_source="webhook", trigger_payload={"order": 1})
        recording.start_execution(conn, execution_id=rec.execution_id, at=T0)
        step_recording.record_step(conn, s3_cfg, execution_id=rec.execution_id, workflow_id="wf-rec",
                                   attempt=StepAttempt("crm", "action", 0, "completed", started_at=T0,
                                                       completed_at=T0 + timedelta(seconds=2)))
        recording.finish_execution(conn, execution_id=rec.execution_id, status="completed",
                                   at=T0 + timedelta(seconds=3))
    events = _audit(database, rec.execution_id)
    by_type = {e["event_type"]: e["metadata"] for e in events}

    assert [e["event_type"] for e in events] == ["CREATED", "STATE_CHANGE", "STARTED", "STATE_CHANGE", "COMPLETED"]
    assert by_type["CREATED"]["workflow_id"] == "wf-rec" and by_type["CREATED"]["trigger_type"] == "webhook"
    assert by_type["COMPLETED"]["duration_ms"] == 3000 and by_type["COMPLETED"]["task_count"] == 1
    assert by_type["STARTED"]["occurred_at"] == T0.isoformat()
    changes = [e["metadata"] for e in events if e["event_type"] == "STATE_CHANGE"]
    assert [(c["from_state"], c["to_state"]) for c in changes] == [("pending", "running"), ("running", "completed")]


def test_failed_timed_out_and_cancelled_carry_their_metadata(database, s3_cfg):
    outcomes = {}
    with database.writer() as conn:
        for status in ("failed", "timed_out", "cancelled"):
            rec = _new(s3_cfg, conn)
            recording.start_execution(conn, execution_id=rec.execution_id, at=T0)
            if status == "cancelled":
                recording.cancel_execution(conn, execution_id=rec.execution_id, cancelled_by="ops@example.com",
                                           reason="wrong customer", pending_steps=3, at=T0 + timedelta(seconds=1))
            else:
                recording.finish_execution(conn, execution_id=rec.execution_id, status=status,
                                           error_message="HTTP 503 from mail", failed_step="send_email",
                                           at=T0 + timedelta(seconds=1))
            outcomes[status] = rec.execution_id
    failed = {e["event_type"]: e["metadata"] for e in _audit(database, outcomes["failed"])}["FAILED"]
    timed_out = {e["event_type"]: e["metadata"] for e in _audit(database, outcomes["timed_out"])}["TIMED_OUT"]
    cancelled = {e["event_type"]: e["metadata"] for e in _audit(database, outcomes["cancelled"])}["CANCELLED"]

    assert failed["error_message"] == "HTTP 503 from mail" and failed["failed_task_id"] == "send_email"
    assert timed_out["failed_task_id"] == "send_email"
    assert cancelled["cancelled_by"] == "ops@example.com" and cancelled["pending_task_count"] == 3
    assert cancelled["reason"] == "wrong customer"


def test_state_and_audit_event_commit_or_roll_back_together(database, s3_cfg):
    with database.writer() as conn:
        rec = _new(s3_cfg, conn)
    with pytest.raises(RuntimeError):
        with database.writer() as conn:
            recording.start_execution(conn, execution_id=rec.execution_id, at=T0)
            raise RuntimeError("crash before commit")
    with database.reader() as conn:
        status = conn.execute(sa.text("SELECT status FROM workflow_executions WHERE execution_id = :e"),
                              {"e": rec.execution_id}).scalar_one()
    assert status == "pending"
    assert [e["event_type"] for e in _audit(database, rec.execution_id)] == ["CREATED"]


def test_a_failing_audit_write_does_not_block_the_state_change(fresh_database, s3_cfg, caplog):
    fresh_database.migrate()
    with fresh_database.writer() as conn:
        rec = _new(s3_cfg, conn)
    with fresh_database.admin() as conn:
        conn.execute(sa.text("REVOKE INSERT ON execution_audit_events FROM flowledger_writer"))
    try:
        with caplog.at_level(logging.ERROR), fresh_database.writer() as conn:
            recording.start_execution(conn, execution_id=rec.execution_id, at=T0)
    finally:
        with fresh_database.admin() as conn:
            conn.execute(sa.text("GRANT INSERT ON execution_audit_events TO flowledger_writer"))
    with fresh_database.reader() as conn:
        status = conn.execute(sa.text("SELECT status FROM workflow_executions WHERE execution_id = :e"),
                              {"e": rec.execution_id}).scalar_one()
    assert status == "running"
    assert "audit event STATE_CHANGE" in caplog.text


def test_an_ended_execution_cannot_end_twice(database, s3_cfg):
    with database.writer() as conn:
        rec = _new(s3_cfg, conn)
        recording.finish_execution(conn, execution_id=rec.execution_id, status="completed", at=T0)
    with pytest.raises(Conflict):
        with database.writer() as conn:
            recording.finish_execution(conn, execution_id=rec.execution_id, status="failed", at=T0)


def _all_stored_text(database, cfg, execution_id) -> str:
    """Every byte the ledger holds about an execution, decompressed, plus every object in the store."""
    parts = []
    with database.admin() as conn:
        parts.append(json.dumps(conn.execute(sa.text(
            "SELECT to_jsonb(e) FROM executions e WHERE execution_id = :e"), {"e": execution_id}).scalar()))
        parts += [t or "" for t in conn.execute(sa.text(
            "SELECT search_text FROM steps WHERE execution_id = :e"), {"e": execution_id}).scalars()]
        for row in conn.execute(sa.text("SELECT payload_id FROM payloads WHERE execution_id = :e"),
                                {"e": execution_id}):
            parts.append(payloads.load_raw(conn, cfg, row.payload_id).decode())
    for uri in cfg.store.list(""):
        parts.append(codec.decode(cfg.store.get(uri)).decode())
    return "\n".join(parts)


def test_masked_fields_never_reach_the_database_or_the_object_store(database, s3_cfg):
    big = {"rows": [{"i": i, "api_key": SECRET} for i in range(40000)]}
    with database.writer() as conn:
        rec = _new(s3_cfg, conn, trigger_payload={"customer": {"id": "C-9", "ssn": SECRET}, "password": SECRET})
        step_recording.record_step(conn, s3_cfg, execution_id=rec.execution_id, workflow_id="wf-rec",
                                   attempt=StepAttempt("crm", "action", 0, "completed",
                                                       input={"Authorization": f"Bearer {SECRET}"}, output=big))
    stored = _all_stored_text(database, s3_cfg, rec.execution_id)
    assert "C-9" in stored and "***" in stored
    assert SECRET not in stored


def test_a_5_mb_output_is_offloaded_and_read_back_identical(database, s3_cfg):
    output = {"blob": [{"sku": f"SKU-{i:07d}", "qty": i % 9, "note": "x" * 40} for i in range(70000)]}
    assert len(codec.canonical_json(output)) > 5_000_000
    with database.writer() as conn:
        rec = _new(s3_cfg, conn)
        step = step_recording.record_step(conn, s3_cfg, execution_id=rec.execution_id, workflow_id="wf-rec",
                                          attempt=StepAttempt("bulk", "action", 0, "completed", output=output))
    with database.reader() as conn:
        row = conn.execute(sa.text("SELECT data, uri, size_bytes, sha256 FROM payloads WHERE payload_id = :p"),
                           {"p": step.output_payload_id}).one()
        back = payloads.load(conn, s3_cfg, step.output_payload_id)
    assert row.data is None and row.uri.startswith("s3://")
    assert back == output
    assert row.sha256 == codec.sha256_hex(codec.canonical_json(output))


def test_a_900_kb_output_stays_in_postgresql(database, s3_cfg):
    output = {"text": "".join(f"line {i} of the invoice export\n" for i in range(30000))[:900_000]}
    with database.writer() as conn:
        rec = _new(s3_cfg, conn)
        step = step_recording.record_step(conn, s3_cfg, execution_id=rec.execution_id, workflow_id="wf-rec",
                                          attempt=StepAttempt("export", "action", 0, "completed", output=output))
    with database.reader() as conn:
        row = conn.execute(sa.text("SELECT data IS NOT NULL AS inline, uri FROM payloads WHERE payload_id = :p"),
                           {"p": step.output_payload_id}).one()
        assert payloads.load(conn, s3_cfg, step.output_payload_id) == output
    assert row.inline and row.uri is None


def test_steps_chain_their_spans_to_the_predecessor_and_the_root(database, s3_cfg):
    with database.writer() as conn:
        rec = _new(s3_cfg, conn)
        first = step_recording.record_step(conn, s3_cfg, execution_id=rec.execution_id, workflow_id="wf-rec",
                                           attempt=StepAttempt("a", "action", 0, "failed", attempt=1))
        second = step_recording.record_step(conn, s3_cfg, execution_id=rec.execution_id, workflow_id="wf-rec",
                                            attempt=StepAttempt("a", "action", 0, "completed", attempt=2))
    assert first.parent_span_id == rec.root_span_id
    assert second.parent_span_id == first.span_id
    assert len(rec.trace_id) == 32 and len(first.span_id) == 16


def test_dictionaries_are_trained_per_workflow_and_payloads_still_round_trip(database, tmp_path):
    import random

    from services import fake_data

    cfg = PayloadConfig(store=open_store("", local_root=tmp_path))
    rng = random.Random(7)
    workflow = f"wf-dict-{uuid.uuid4().hex[:6]}"
    values = [fake_data.step_payload(rng, step_name="create_invoice", size_hint=3000)
              for _ in range(payloads.TRAIN_AFTER_SAMPLES + 5)]
    with database.writer() as conn:
        rec = _new(cfg, conn, workflow_id=workflow)
        refs = [payloads.store(conn, cfg, execution_id=rec.execution_id, kind="output", value=v, workflow_id=workflow)
                for v in values]
    with database.reader() as conn:
        codecs = conn.execute(sa.text(
            "SELECT codec FROM payloads WHERE execution_id = :e ORDER BY created_at"),
            {"e": rec.execution_id}).scalars().all()
        assert [payloads.load(conn, cfg, r.payload_id) for r in refs[-3:]] == values[-3:]
    assert "zstd-dict" in codecs
