"""Batches recorded in bulk keep every rule of recording one by one: same rows, same audit trail."""
import copy
import json
import logging
import threading
import time
import uuid

import pytest
import sqlalchemy as sa

from services import codec, opensearch, payloads, reporting, tracing
from services.errors import InvalidInput
from services.objectstore import open_store
from services.payloads import PayloadConfig

SECRET = "sk_live_bulk_never_stored_5150"
TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"


@pytest.fixture
def cfg(tmp_path):
    return PayloadConfig(store=open_store("", local_root=tmp_path / "objects"), masking_keys=("password",),
                         train_dictionaries=False, inline_max_bytes=4000)


def _workflow(conn, *, masking=None, policy=None) -> str:
    workflow = f"wf-bulk-{uuid.uuid4().hex[:6]}"
    conn.execute(sa.text("INSERT INTO workflows (workflow_id) VALUES (:w)"), {"w": workflow})
    conn.execute(sa.text(
        "INSERT INTO workflow_versions (workflow_id, version, definition, masking, payload_policy) "
        "VALUES (:w, 1, '{}', CAST(:m AS jsonb), CAST(:p AS jsonb))"),
        {"w": workflow, "m": json.dumps(masking or {}), "p": json.dumps(policy or {})})
    return workflow


def _step(name, status, second, **extra):
    return {"step_name": name, "status": status, "started_at": f"2026-11-20T10:00:{second:02d}Z",
            "completed_at": f"2026-11-20T10:00:{second + 1:02d}Z", **extra}


def _reports(masked_wf: str, summary_wf: str) -> list[dict]:
    """One report of each shape: every outcome, retries, secrets, a large output, logs, context, traceparent."""
    secret_input = {"customer": {"email": "ann@example.com", "id": "C-77123"}, "password": SECRET, "n": 123456}
    return [
        {"workflow_id": masked_wf, "status": "completed", "trigger_source": "webhook",
         "traceparent": f"00-{TRACE}-00f067aa0ba902b7-01",
         "trigger_payload": {"order": {"number": "ORD-88123"}, "password": SECRET},
         "started_at": "2026-11-20T10:00:00Z", "completed_at": "2026-11-20T10:00:09Z",
         "steps": [_step("fetch", "completed", 0, input=secret_input, output={"rows": ["a", "b"], "token": "x"},
                         external_request_id="req-1", response_status=200),
                   _step("send", "failed", 2, error_message="HTTP 503 from mail", input={"to": "ann"}),
                   _step("send", "completed", 4, seq=1, attempt=2, output={"sent": True}, wait_ms=500)],
         "logs": [{"message": "retrying send", "level": "warning", "timestamp": "2026-11-20T10:00:03Z"}],
         "context": {"fetch": {"password": SECRET, "rows": 2}}},
        {"workflow_id": masked_wf, "status": "failed", "started_at": "2026-11-20T10:00:00Z",
         "completed_at": "2026-11-20T10:00:05Z",
         "steps": [_step("charge", "failed", 1, error_message="card declined", output={"code": "declined"})]},
        {"workflow_id": masked_wf, "status": "cancelled", "error_message": "operator stop", "failed_step": "wait",
         "started_at": "2026-11-20T10:00:00Z", "completed_at": "2026-11-20T10:00:30Z"},
        {"workflow_id": masked_wf, "status": "timed_out", "started_at": "2026-11-20T10:00:00Z",
         "completed_at": "2026-11-20T10:01:00Z",
         "steps": [_step("export", "timed_out", 0, output={"blob": "z" * 9000, "password": SECRET})]},
        {"workflow_id": masked_wf, "status": "running", "started_at": "2026-11-20T10:00:00Z",
         "steps": [_step("poll", "running", 0, input={"page": 1})]},
        {"workflow_id": masked_wf, "status": "pending", "steps": [_step("queued", "skipped", 0)],
         "logs": [{"message": "waiting for a slot", "timestamp": "2026-11-20T10:00:00Z"}]},
        {"workflow_id": summary_wf, "status": "completed", "trigger_payload": {"card": "4111"},
         "started_at": "2026-11-20T10:00:00Z", "completed_at": "2026-11-20T10:00:02Z",
         "steps": [_step("kept-as-summary", "completed", 0, input={"a": 1}, output={"b": [1, 2, 3]})],
         "context": {"kept": False}},
    ]


def _snapshot(conn, cfg, execution_id) -> dict:
    """Everything the ledger holds about one execution, without ids and recording times."""
    one = {"e": execution_id}

    def rows(sql):
        return [dict(r) for r in conn.execute(sa.text(sql), one).mappings()]

    steps = rows("SELECT * FROM steps WHERE execution_id = :e ORDER BY seq, attempt")
    execution = rows("SELECT * FROM executions WHERE execution_id = :e")[0]
    spans = [execution["root_span_id"]] + [s["span_id"] for s in steps]
    for step in steps:
        step["parent"] = spans.index(step.pop("parent_span_id"))
        for kind in ("input", "output"):
            pid = step.pop(f"{kind}_payload_id")
            step[kind] = payloads.load(conn, cfg, pid) if pid else None
        for key in ("step_id", "span_id", "created_at", "execution_id"):
            step.pop(key)
    trigger_id = execution.pop("trigger_payload_id")
    execution["trigger_stored"] = payloads.load(conn, cfg, trigger_id) if trigger_id else None
    execution["parent_span_id"] = execution["parent_span_id"] is not None
    execution["trace_id"] = execution["trace_id"] if execution["parent_span_id"] else len(execution["trace_id"])
    for key in ("execution_id", "created_at", "root_span_id"):
        execution.pop(key)
    return {
        "execution": execution,
        "state": rows("SELECT status, started_at, completed_at, duration_ms, error_message, failed_step, last_seq, "
                      "workflow_id, trigger_source FROM execution_state WHERE execution_id = :e"),
        "transitions": rows("SELECT seq, status, at, reason, error_message, failed_step, detail "
                            "FROM execution_transitions WHERE execution_id = :e ORDER BY seq"),
        "steps": steps,
        "payloads": rows("SELECT kind, codec, size_bytes, sha256, uri IS NULL AS inline, policy FROM payloads "
                         "WHERE execution_id = :e ORDER BY kind, sha256"),
        "audit": rows("SELECT event_type, metadata FROM execution_audit_events WHERE execution_id = :e ORDER BY id"),
        "logs": rows("SELECT level, message, step_id FROM execution_logs WHERE execution_id = :e ORDER BY id"),
        "exports": sorted(r["kind"] for r in rows("SELECT kind FROM otlp_exports WHERE execution_id = :e")),
        "outbox": sorted((r["doc"]["step_name"], r["doc"].get("search_text") or "", r["doc"]["workflow_id"])
                         for r in rows("SELECT doc FROM search_outbox WHERE execution_id = :e")),
    }


def test_a_batch_in_bulk_stores_exactly_what_recording_one_by_one_stores(fresh_database, cfg):
    fresh_database.migrate()
    with fresh_database.writer() as conn:
        masked_wf = _workflow(conn, masking={"keys": ["email"], "paths": ["customer.id"]})
        summary_wf = _workflow(conn, policy={"log_payload": "summary"})
        opensearch.set_outbox(conn, enabled=True, reason="test: outbox rows follow the steps")
    reports = _reports(masked_wf, summary_wf)
    one_by_one, bulk = copy.deepcopy(reports), copy.deepcopy(reports)
    for report in one_by_one + bulk:
        report["execution_id"] = str(uuid.uuid4())
    exporting = tracing.export_enabled()
    tracing.configure_export(enabled=True)
    try:
        with fresh_database.writer() as conn:
            singles = [reporting.report_execution(conn, cfg, r)
                       for r in reporting.parse_reports({"executions": one_by_one})]
        with fresh_database.writer() as conn:
            batch = reporting.report_executions(conn, cfg, reporting.parse_reports({"executions": bulk}))
    finally:
        tracing.configure_export(enabled=exporting)

    assert [r.created for r in batch] == [True] * len(reports)
    assert batch[0].trace_id == TRACE
    with fresh_database.reader() as conn:
        expected = [_snapshot(conn, cfg, r.execution_id) for r in singles]
        assert [_snapshot(conn, cfg, r.execution_id) for r in batch] == expected
    first, summary = expected[0], expected[-1]
    assert [a["event_type"] for a in first["audit"]] == ["CREATED", "STATE_CHANGE", "STARTED", "STATE_CHANGE",
                                                         "COMPLETED"]
    assert first["exports"] == ["final", "running"] and len(first["outbox"]) == 3
    assert {p["kind"] for p in first["payloads"]} == {"input", "output", "context"}
    assert first["execution"]["trigger_payload"] == {"order": {"number": "ORD-88123"}, "password": "***"}
    assert not expected[3]["payloads"][0]["inline"]  # the 9 KB output went to the object store
    assert summary["payloads"] and all(p["policy"] == "summary" for p in summary["payloads"])
    with fresh_database.admin() as conn:
        stored = conn.execute(sa.text(
            "SELECT string_agg(coalesce(trigger_payload::text, ''), '') FROM executions WHERE execution_id = ANY(:i)"),
            {"i": [r.execution_id for r in batch]}).scalar()
        texts = conn.execute(sa.text("SELECT string_agg(coalesce(search_text, ''), ' ') FROM steps "
                                     "WHERE execution_id = ANY(:i)"), {"i": [r.execution_id for r in batch]}).scalar()
    assert SECRET not in stored + texts and "ann@example.com" not in texts and "C-77123" not in texts
    offloaded = list(cfg.store.root.rglob("*.zst"))
    assert offloaded and all(SECRET.encode() not in codec.decode(p.read_bytes()) for p in offloaded)


def test_ids_already_recorded_or_repeated_in_the_batch_come_back_not_created(database, cfg):
    with database.writer() as conn:
        workflow = _workflow(conn)
    known, repeated = str(uuid.uuid4()), str(uuid.uuid4())
    report = {"workflow_id": workflow, "status": "completed", "steps": [_step("a", "completed", 0)]}
    with database.writer() as conn:
        first = reporting.report_executions(conn, cfg, reporting.parse_reports({**report, "execution_id": known}))
    body = {"executions": [{**report, "execution_id": known}, {**report, "execution_id": repeated},
                           {**report, "execution_id": repeated}, report]}
    with database.writer() as conn:
        records = reporting.report_executions(conn, cfg, reporting.parse_reports(body))
    assert [r.created for r in records] == [False, True, False, True]
    assert records[0].trace_id == first[0].trace_id and records[2].trace_id == records[1].trace_id
    with database.reader() as conn:
        counts = conn.execute(sa.text(
            "SELECT execution_id, count(*) FROM steps WHERE execution_id = ANY(:i) GROUP BY execution_id"),
            {"i": [r.execution_id for r in records]}).all()
    assert sorted(n for _, n in counts) == [1, 1, 1]


def test_a_failing_bulk_audit_insert_still_records_the_executions_and_logs_each_failure(
        fresh_database, cfg, caplog):
    fresh_database.migrate()
    with fresh_database.writer() as conn:
        workflow = _workflow(conn)
    with fresh_database.admin() as conn:
        conn.execute(sa.text("REVOKE INSERT ON execution_audit_events FROM flowledger_writer"))
    body = {"executions": [{"workflow_id": workflow, "status": "completed", "steps": [_step("a", "completed", 0)],
                            "started_at": "2026-11-20T10:00:00Z", "completed_at": "2026-11-20T10:00:01Z"}] * 2}
    try:
        with caplog.at_level(logging.WARNING), fresh_database.writer() as conn:
            records = reporting.report_executions(conn, cfg, reporting.parse_reports(body))
    finally:
        with fresh_database.admin() as conn:
            conn.execute(sa.text("GRANT INSERT ON execution_audit_events TO flowledger_writer"))
    with fresh_database.reader() as conn:
        states = conn.execute(sa.text("SELECT status FROM execution_state WHERE execution_id = ANY(:i)"),
                              {"i": [r.execution_id for r in records]}).scalars().all()
    assert states == ["completed", "completed"]
    assert "bulk insert of 10 audit events failed" in caplog.text
    assert caplog.text.count("audit event COMPLETED") == 2


def test_an_unstorable_payload_anywhere_in_the_batch_stores_nothing(database, cfg):
    with database.writer() as conn:
        workflow = _workflow(conn)
    good = {"workflow_id": workflow, "status": "completed", "execution_id": str(uuid.uuid4()),
            "steps": [_step("a", "completed", 0, output={"ok": 1})]}
    bad = {"workflow_id": workflow, "status": "completed", "trigger_payload": {"text": "nul \u0000 here"}}
    with pytest.raises(InvalidInput), database.writer() as conn:
        reporting.report_executions(conn, cfg, reporting.parse_reports({"executions": [good, bad]}))
    with database.reader() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM executions WHERE workflow_id = :w"),
                            {"w": workflow}).scalar() == 0


def test_a_concurrent_batch_with_the_same_id_fails_with_an_integrity_error_the_caller_retries(database, cfg):
    with database.writer() as conn:
        workflow = _workflow(conn)
    body = {"workflow_id": workflow, "status": "completed", "execution_id": str(uuid.uuid4()),
            "steps": [_step("a", "completed", 0)]}
    outcome: dict = {}

    def second() -> None:
        try:
            with database.writer() as conn:
                conn.execute(sa.text("SET application_name = 'bulk-second'"))
                reporting.report_executions(conn, cfg, reporting.parse_reports(body))
        except Exception as exc:  # noqa: BLE001 (the test inspects what the thread raised)
            outcome["error"] = exc

    with database.writer() as conn:
        reporting.report_executions(conn, cfg, reporting.parse_reports(body))
        thread = threading.Thread(target=second)
        thread.start()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not _waiting_on_a_lock(database, "bulk-second"):
            pass
    thread.join(30)
    assert isinstance(outcome.get("error"), sa.exc.IntegrityError)
    with database.writer() as conn:
        again = reporting.report_executions(conn, cfg, reporting.parse_reports(body))
    assert again[0].created is False


def _waiting_on_a_lock(database, application_name: str) -> bool:
    with database.admin() as conn:  # a new transaction per poll: pg_stat_activity is a snapshot per transaction
        return bool(conn.execute(sa.text(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = :a AND wait_event_type = 'Lock'"),
            {"a": application_name}).scalar())


def test_a_dictionary_trained_in_the_middle_of_a_batch_is_used_and_every_payload_reads_back(database, tmp_path):
    import random

    from services import fake_data

    cfg = PayloadConfig(store=open_store("", local_root=tmp_path))
    with database.writer() as conn:
        workflow = _workflow(conn)
    rng = random.Random(3)
    outputs = [[fake_data.step_payload(rng, step_name="create_invoice", size_hint=1500) for _ in range(10)]
               for _ in range(payloads.TRAIN_AFTER_SAMPLES // 10 + 5)]
    body = {"executions": [{"workflow_id": workflow, "status": "completed",
                            "steps": [_step(f"s{i}", "completed", i, output=o) for i, o in enumerate(steps)]}
                           for steps in outputs]}
    with database.writer() as conn:
        records = reporting.report_executions(conn, cfg, reporting.parse_reports(body))
    with database.reader() as conn:
        rows = conn.execute(sa.text(
            "SELECT s.execution_id, s.seq, p.codec, p.payload_id FROM steps s JOIN payloads p "
            "ON p.payload_id = s.output_payload_id WHERE s.execution_id = ANY(:i)"),
            {"i": [r.execution_id for r in records]}).all()
        index = {r.execution_id: n for n, r in enumerate(records)}
        assert all(payloads.load(conn, cfg, r.payload_id) == outputs[index[r.execution_id]][r.seq] for r in rows)
    assert len(rows) == len(outputs) * 10 and {"zstd", "zstd-dict"} == {r.codec for r in rows}
