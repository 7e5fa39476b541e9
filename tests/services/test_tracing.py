"""Traces rebuilt from the ledger and exported over OTLP/HTTP to a receiver in the test."""
from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from app.runtime import Runtime
from services import events, recording, step_recording, trace_export, tracing
from services.db import Database
from services.events import IncomingEvent
from services.recording import NewExecution
from services.step_recording import StepAttempt
from services.tracecontext import TraceParent, new_span_id, new_trace_id, traceparent
from tests.fixtures.otlp import OtlpReceiver, free_port

ERROR = 2  # Status.STATUS_CODE_ERROR in the OTLP protobuf


@pytest.fixture
def export_on(monkeypatch: pytest.MonkeyPatch) -> None:
    """Queue exports in this test only (the flag is process-wide)."""
    monkeypatch.setattr(tracing, "_export", {"enabled": True, "running_delay_s": 30.0})
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    server = OtlpReceiver().start()
    yield server
    server.stop()


def _wf() -> str:
    return f"wf-trace-{uuid.uuid4().hex[:8]}"


def _record(database: Database, runtime: Runtime, *, finish: bool = True,
            parent: TraceParent | None = None, event_id: uuid.UUID | None = None) -> dict:
    """An execution whose second step needed a retry and whose last step failed."""
    cfg, wf = runtime.payloads, _wf()
    t0 = datetime.now(UTC) - timedelta(minutes=5)
    at = [t0 + timedelta(seconds=s) for s in range(10)]
    steps = [
        StepAttempt("fetch_order", "action", 0, "completed", started_at=at[1], completed_at=at[2],
                    output={"order": "A-1"}, response_status=200, external_request_id="req-1"),
        StepAttempt("charge_card", "action", 1, "failed", started_at=at[2], completed_at=at[3],
                    error_message="502 from gateway", response_status=502),
        StepAttempt("charge_card", "action", 1, "completed", attempt=2, started_at=at[4], completed_at=at[5],
                    wait_ms=1000, response_status=201),
        StepAttempt("notify", "action", 2, "failed", started_at=at[5], completed_at=at[6],
                    error_message="smtp down"),
    ]
    with database.writer() as conn:
        rec = recording.create_execution(conn, cfg, NewExecution(
            workflow_id=wf, trigger_source="webhook", trigger_payload={"order": "A-1"}, parent=parent,
            event_id=event_id, started_at=t0))
        recording.start_execution(conn, execution_id=rec.execution_id, at=at[1])
        spans = [step_recording.record_step(conn, cfg, execution_id=rec.execution_id, workflow_id=wf, attempt=s)
                 for s in steps[: 4 if finish else 1]]
        if finish:
            recording.finish_execution(conn, execution_id=rec.execution_id, status="failed", at=at[7],
                                       error_message="smtp down", failed_step="notify")
    return {"record": rec, "steps": spans, "workflow_id": wf, "t0": t0, "end": at[7]}


def _links(spans: list[dict]) -> dict[str, str | None]:
    return {s["span_id"]: s["parent_span_id"] for s in spans}


def _soon(seconds: float = 1.0) -> datetime:
    return datetime.now(UTC) + timedelta(seconds=seconds)


def test_exported_spans_carry_exactly_the_stored_trace_and_span_ids_and_parent_links(
        database, runtime, export_on, receiver):
    run = _record(database, runtime)
    rec, steps = run["record"], run["steps"]
    exporter = trace_export.make_exporter(receiver.endpoint, timeout_s=2)

    trace_export.drain_exports(database, exporter, now=_soon(), batch=1000)

    got = receiver.spans_of(rec.trace_id)
    assert len(got) == 5
    assert _links(got) == {rec.root_span_id: None, steps[0].span_id: rec.root_span_id,
                           steps[1].span_id: steps[0].span_id, steps[2].span_id: steps[1].span_id,
                           steps[3].span_id: steps[2].span_id}
    with database.reader() as conn:
        stored = conn.execute(recording.sa.text(
            "SELECT span_id, parent_span_id FROM steps WHERE execution_id = :e"),
            {"e": rec.execution_id}).all()
    assert {s.span_id: s.parent_span_id for s in stored} == {k: v for k, v in _links(got).items() if v}
    root = next(s for s in got if s["span_id"] == rec.root_span_id)
    assert root["name"] == run["workflow_id"]
    assert (root["status_code"], root["status_message"]) == (ERROR, "smtp down")
    assert root["resource"]["service.name"] == "flowledger"
    assert root["resource"]["flowledger.workflow.id"] == run["workflow_id"]
    assert root["attributes"]["flowledger.execution.provisional"] is False
    assert root["end"] - root["start"] == 7 * 10**9  # started_at of create_execution to the FAILED transition
    retry = next(s for s in got if s["span_id"] == steps[2].span_id)
    assert retry["name"] == "charge_card #2" and "retry" in retry["events"]
    assert retry["attributes"]["flowledger.step.attempt"] == 2
    assert retry["attributes"]["http.response.status_code"] == 201
    first = next(s for s in got if s["span_id"] == steps[0].span_id)
    assert first["attributes"]["flowledger.step.external_request_id"] == "req-1"
    assert first["attributes"]["flowledger.execution.id"] == str(rec.execution_id)
    rows = trace_export.queued_exports(database, rec.execution_id)
    assert [(r["kind"], r["state"], r["attempts"]) for r in rows] == [("running", "pending", 0), ("final", "sent", 1)]


def test_a_down_collector_keeps_exports_queued_with_growing_backoff_until_it_returns(
        database, runtime, export_on):
    port = free_port()
    exporter = trace_export.make_exporter(f"http://127.0.0.1:{port}", timeout_s=0.5)
    run = _record(database, runtime)
    rec = run["record"]
    now = _soon()

    trace_export.drain_exports(database, exporter, now=now, batch=1000)
    [row] = [r for r in trace_export.queued_exports(database, rec.execution_id) if r["kind"] == "final"]
    assert (row["state"], row["attempts"], row["next_attempt_at"]) == ("pending", 1, now + timedelta(seconds=1))
    assert row["last_error"]

    trace_export.drain_exports(database, exporter, now=now + timedelta(seconds=1), batch=1000)
    trace_export.drain_exports(database, exporter, now=now + timedelta(seconds=2), batch=1000)  # not due yet
    [row] = [r for r in trace_export.queued_exports(database, rec.execution_id) if r["kind"] == "final"]
    assert (row["state"], row["attempts"], row["next_attempt_at"]) == ("pending", 2, now + timedelta(seconds=3))

    receiver = OtlpReceiver(port).start()
    try:
        trace_export.drain_exports(database, exporter, now=now + timedelta(seconds=3), batch=1000)
        got = receiver.spans_of(rec.trace_id)
    finally:
        receiver.stop()
    assert len(got) == 5 and rec.root_span_id in _links(got)
    [row] = [r for r in trace_export.queued_exports(database, rec.execution_id) if r["kind"] == "final"]
    assert (row["state"], row["attempts"]) == ("sent", 3)


def test_an_exporter_that_raises_leaves_the_row_queued(database, runtime, export_on):
    class Broken:
        def export(self, spans):
            raise ConnectionError("collector unreachable")

    rec = _record(database, runtime)["record"]
    result = trace_export.drain_exports(database, Broken(), now=_soon(), batch=1000)
    [row] = [r for r in trace_export.queued_exports(database, rec.execution_id) if r["kind"] == "final"]
    assert result.failed >= 1
    assert (row["state"], row["attempts"]) == ("pending", 1)
    assert "collector unreachable" in row["last_error"]


def test_a_running_execution_exports_its_root_span_before_it_finishes(database, runtime, export_on, receiver):
    exporter = trace_export.make_exporter(receiver.endpoint, timeout_s=2)
    run = _record(database, runtime, finish=False)
    rec, now = run["record"], _soon()

    trace_export.drain_exports(database, exporter, now=now, batch=1000)
    assert receiver.spans_of(rec.trace_id) == []  # short runs never send a provisional root

    later = now + timedelta(seconds=31)
    trace_export.drain_exports(database, exporter, now=later, batch=1000)
    [root] = receiver.spans_of(rec.trace_id)
    assert (root["span_id"], root["parent_span_id"]) == (rec.root_span_id, None)
    assert root["attributes"]["flowledger.execution.provisional"] is True
    assert root["attributes"]["flowledger.execution.status"] == "running"
    assert root["end"] == int(later.timestamp()) * 10**9 + later.microsecond * 1000

    with database.writer() as conn:
        recording.finish_execution(conn, execution_id=rec.execution_id, status="completed", at=later)
    trace_export.drain_exports(database, exporter, now=later + timedelta(seconds=1), batch=1000)
    got = receiver.spans_of(rec.trace_id)
    assert len(got) == 3  # the provisional root, then the final root and the one step
    final_root = got[1] if got[1]["span_id"] == rec.root_span_id else got[2]
    assert final_root["attributes"]["flowledger.execution.provisional"] is False
    assert final_root["attributes"]["flowledger.execution.status"] == "completed"


def test_a_run_that_finishes_before_the_running_delay_sends_its_root_once(database, runtime, export_on, receiver):
    exporter = trace_export.make_exporter(receiver.endpoint, timeout_s=2)
    rec = _record(database, runtime)["record"]

    trace_export.drain_exports(database, exporter, now=_soon(31), batch=1000)

    assert [s["span_id"] for s in receiver.spans_of(rec.trace_id)].count(rec.root_span_id) == 1
    rows = trace_export.queued_exports(database, rec.execution_id)
    assert [(r["kind"], r["state"]) for r in rows] == [("running", "sent"), ("final", "sent")]
    assert rows[0]["attempts"] == 0 and "superseded" in rows[0]["last_error"]


def test_nothing_is_queued_when_export_is_off(database, runtime, monkeypatch):
    monkeypatch.setattr(tracing, "_export", {"enabled": False, "running_delay_s": 30.0})
    rec = _record(database, runtime)["record"]
    assert trace_export.queued_exports(database, rec.execution_id) == []


def test_create_execution_continues_an_incoming_traceparent(database, runtime, export_on, receiver):
    parent = TraceParent(trace_id=new_trace_id(), span_id=new_span_id())
    rec = _record(database, runtime, parent=parent)["record"]
    assert rec.trace_id == parent.trace_id

    trace_export.drain_exports(database, trace_export.make_exporter(receiver.endpoint, timeout_s=2),
                               now=_soon(), batch=1000)

    got = receiver.spans_of(parent.trace_id)
    assert len(got) == 5
    root = next(s for s in got if s["span_id"] == rec.root_span_id)
    assert root["parent_span_id"] == parent.span_id
    assert root["kind"] == 2  # SERVER: it serves the caller's request


def test_an_execution_from_an_event_continues_the_event_traceparent(database, runtime):
    incoming = TraceParent(trace_id=new_trace_id(), span_id=new_span_id())
    with database.writer() as conn:
        event = events.ingest(conn, IncomingEvent(
            source_system="trace-test", body=b'{"type": "order.created"}', content_type="application/json",
            traceparent=traceparent(incoming.trace_id, incoming.span_id)), max_depth=50)
        parent = tracing.parent_for_event(conn, event_id=event.event_id)
    assert parent == incoming

    rec = _record(database, runtime, parent=parent, event_id=event.event_id)["record"]
    with database.reader() as conn:
        trace = tracing.build_trace(conn, rec.execution_id)
    spans = trace["resourceSpans"][0]["scopeSpans"][0]["spans"]
    assert {s["traceId"] for s in spans} == {incoming.trace_id}
    assert spans[0]["spanId"] == rec.root_span_id and spans[0]["parentSpanId"] == incoming.span_id


def test_a_malformed_event_traceparent_starts_a_new_trace(database):
    with database.writer() as conn:
        event = events.ingest(conn, IncomingEvent(
            source_system="trace-test", body=b"{}", traceparent="00-zz-not-a-trace-01"), max_depth=50)
        assert tracing.parent_for_event(conn, event_id=event.event_id) is None


def test_the_otlp_json_of_a_running_execution_ends_provisionally_at_now(database, runtime):
    run = _record(database, runtime, finish=False)
    now = datetime.now(UTC)
    with database.reader() as conn:
        trace = tracing.build_trace(conn, run["record"].execution_id, now=now)
    root = trace["resourceSpans"][0]["scopeSpans"][0]["spans"][0]
    assert root["endTimeUnixNano"] == str(tracing._ns(now))
    assert {"key": "flowledger.execution.provisional", "value": {"boolValue": True}} in root["attributes"]
    assert root["status"] == {"code": 0}


def test_traces_url_appends_the_signal_path_to_a_collector_base_url():
    assert trace_export.traces_url("http://collector:4318") == "http://collector:4318/v1/traces"
    assert trace_export.traces_url("http://collector:4318/v1/traces") == "http://collector:4318/v1/traces"
