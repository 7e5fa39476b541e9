"""Reading an execution back whole: one statement, the same record separate reads of each table give."""
import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from services import inspection, payloads, recording, step_recording
from services.errors import NotFound
from services.objectstore import open_store
from services.payloads import PayloadConfig, RawJSON
from services.recording import NewExecution
from services.step_recording import StepAttempt
from services.tracecontext import traceparent

T0 = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)


@pytest.fixture
def cfg(tmp_path):
    return PayloadConfig(store=open_store("", local_root=tmp_path), train_dictionaries=False,
                         inline_max_bytes=3000)


def _execution(database, cfg, *, trigger=None) -> uuid.UUID:
    workflow = f"wf-insp-{uuid.uuid4().hex[:6]}"
    with database.writer() as conn:
        rec = recording.create_execution(conn, cfg, NewExecution(
            workflow_id=workflow, trigger_payload=trigger or {"order": {"number": "ORD-7", "note": "Größe ✓"}},
            started_at=T0))
        for seq, (name, status, attempt) in enumerate([("fetch", "completed", 1), ("send", "failed", 1),
                                                       ("send", "completed", 2)]):
            step = step_recording.record_step(conn, cfg, execution_id=rec.execution_id, workflow_id=workflow,
                                              attempt=StepAttempt(
                                                  name, "action", min(seq, 1), status, attempt=attempt,
                                                  started_at=T0 + timedelta(seconds=seq),
                                                  completed_at=T0 + timedelta(seconds=seq, milliseconds=250),
                                                  input={"q": name, "n": seq, "city": "Zürich"},
                                                  output={"ok": status == "completed", "items": [1.5, None, "ä"]},
                                                  error_message=None if status == "completed" else "HTTP 503",
                                                  response_status=200 if status == "completed" else 503))
            recording.append_log(conn, execution_id=rec.execution_id, message=f"{name} {status}",
                                 step_id=step.step_id, level="warning" if status == "failed" else "info")
        recording.finish_execution(conn, execution_id=rec.execution_id, status="completed", cfg=cfg,
                                   at=T0 + timedelta(seconds=5), context={"fetch": {"ok": True}})
    return rec.execution_id


def _separately(conn, cfg, execution_id) -> dict:
    """The record as five separate plain reads give it: what the one statement must reproduce."""
    execution = dict(conn.execute(inspection.EXECUTION_SQL, {"e": execution_id}).mappings().one())
    meta = {r.payload_id: r for r in conn.execute(sa.text(
        "SELECT payload_id, kind, size_bytes, stored_bytes, sha256, uri, codec, policy FROM payloads "
        "WHERE execution_id = :e"), {"e": execution_id})}
    if execution["trigger_payload"] is None and execution["trigger_payload_id"]:
        execution["trigger_payload"] = payloads.load(conn, cfg, execution["trigger_payload_id"])
    steps = [dict(s) for s in conn.execute(sa.text(
        "SELECT step_id, seq, step_name, step_type, attempt AS attempt_count, status, started_at, completed_at, "
        "duration_ms, wait_ms, error_message, response_status, external_request_id, span_id, parent_span_id, "
        "idempotency_key, reused_from_execution, input_payload_id, output_payload_id "
        "FROM steps WHERE execution_id = :e ORDER BY seq, attempt, started_at"), {"e": execution_id}).mappings()]
    for step in steps:
        for kind in ("input", "output"):
            payload_id = step.pop(f"{kind}_payload_id")
            info = meta.get(payload_id)
            step[f"{kind}_meta"] = None if info is None else {
                "payload_id": info.payload_id, "size_bytes": info.size_bytes, "stored_bytes": info.stored_bytes,
                "sha256": info.sha256, "offloaded_uri": info.uri, "codec": info.codec, "policy": info.policy,
                "kept": info.policy == "full"}
            step[kind] = payloads.load(conn, cfg, payload_id) if payload_id else None
    execution["steps"] = steps
    context = next((m.payload_id for m in meta.values() if m.kind == "context"), None)
    execution["context_snapshot"] = payloads.load(conn, cfg, context) if context else None
    execution["audit_events"] = inspection.audit_events(conn, execution_id)
    execution["logs"] = [dict(r) for r in conn.execute(sa.text(
        "SELECT \"timestamp\", level, message, step_id FROM execution_logs WHERE execution_id = :e "
        "ORDER BY \"timestamp\", id"), {"e": execution_id}).mappings()]
    execution["traceparent"] = traceparent(execution["trace_id"], execution["root_span_id"])
    return execution


def _unraw(value):
    if isinstance(value, RawJSON):
        return json.loads(value)
    if isinstance(value, dict):
        return {k: _unraw(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_unraw(v) for v in value]
    return value


def test_the_one_statement_read_equals_separate_reads_of_every_table_types_and_order_included(database, cfg):
    execution_id = _execution(database, cfg)
    with database.reader() as conn:
        got = inspection.get_execution(conn, cfg, execution_id)
        expected = _separately(conn, cfg, execution_id)
    assert got == expected
    assert repr(got) == repr(expected), "same keys in the same order, same value types (UUID, tz-aware datetime)"
    assert [(s["step_name"], s["attempt_count"]) for s in got["steps"]] == [("fetch", 1), ("send", 1), ("send", 2)]
    assert got["steps"][2]["input"] == {"q": "send", "n": 2, "city": "Zürich"}
    assert got["context_snapshot"] == {"fetch": {"ok": True}}
    assert len(got["logs"]) == 3 and {"CREATED", "COMPLETED"} <= {a["event_type"] for a in got["audit_events"]}


def test_raw_payloads_are_the_stored_json_text_of_exactly_the_decoded_values(database, cfg):
    execution_id = _execution(database, cfg)
    with database.reader() as conn:
        parsed = inspection.get_execution(conn, cfg, execution_id)
        raw = inspection.get_execution(conn, cfg, execution_id, raw_payloads=True)
    assert isinstance(raw["trigger_payload"], RawJSON) and isinstance(raw["context_snapshot"], RawJSON)
    assert all(isinstance(s[k], RawJSON) for s in raw["steps"] for k in ("input", "output"))
    assert _unraw(raw) == parsed


def test_a_trigger_payload_kept_as_a_payload_row_comes_back_from_the_same_read(database, cfg):
    big = {"rows": ["x" * 100] * 60}  # above inline_max_bytes: stored as a payload row, not in the column
    execution_id = _execution(database, cfg, trigger=big)
    with database.reader() as conn:
        assert conn.execute(sa.text("SELECT trigger_payload IS NULL AND trigger_payload_id IS NOT NULL "
                                    "FROM executions WHERE execution_id = :e"), {"e": execution_id}).scalar()
        assert inspection.get_execution(conn, cfg, execution_id)["trigger_payload"] == big
        assert json.loads(inspection.get_execution(conn, cfg, execution_id, raw_payloads=True)["trigger_payload"]) \
            == big
        lean = inspection.get_execution(conn, cfg, execution_id, include_payloads=False)
    assert lean["trigger_payload"] == big
    assert all(s["input"] is None and s["input_meta"]["size_bytes"] > 0 for s in lean["steps"])


def test_timestamps_keep_the_session_time_zone_like_the_execution_columns(database, cfg):
    execution_id = _execution(database, cfg)
    with database.reader() as conn:
        conn.execute(sa.text("SET LOCAL TimeZone = 'Europe/Paris'"))
        got = inspection.get_execution(conn, cfg, execution_id)
    zone = got["started_at"].tzinfo
    assert str(zone) == "Europe/Paris"
    assert all(s["started_at"].tzinfo == zone for s in got["steps"])
    assert all(line["timestamp"].tzinfo == zone for line in got["logs"])
    assert got["steps"][0]["started_at"] == T0 and got["steps"][0]["started_at"].utcoffset() == timedelta(hours=1)


def test_the_read_leaves_the_connection_planning_custom_plans_whatever_happens(database, cfg):
    execution_id = _execution(database, cfg)

    def mode(conn):
        return conn.execute(sa.text("SHOW plan_cache_mode")).scalar()

    with database.reader() as conn:
        before = mode(conn)
        inspection.get_execution(conn, cfg, execution_id)
        assert mode(conn) == before
        with pytest.raises(NotFound):
            inspection.get_execution(conn, cfg, uuid.uuid4())
        assert mode(conn) == before
    with database.engine("reader").connect() as conn:
        conn.execution_options(isolation_level="AUTOCOMMIT")
        with pytest.raises(sa.exc.DataError):  # a failed read: its SET is rolled back with it
            inspection.get_execution(conn, cfg, "not-a-uuid")
        assert mode(conn) == before
        assert inspection.get_execution(conn, cfg, execution_id)["execution_id"] == execution_id
        assert mode(conn) == before
