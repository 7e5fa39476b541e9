"""Traces rebuilt from the ledger alone: spans of an execution, as OTLP JSON, and the export queue."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy import Connection

from services.errors import NotFound
from services.tracecontext import TraceParent, parse_traceparent

SERVICE_NAME = "flowledger"
SCOPE_NAME = "flowledger.recording"
FAILED = ("failed", "timed_out")
TERMINAL = ("completed", "failed", "timed_out", "cancelled")
KIND_CODES = {"INTERNAL": 1, "SERVER": 2, "CLIENT": 3}
STATUS_CODES = {"UNSET": 0, "OK": 1, "ERROR": 2}

EXECUTION_SQL = sa.text(
    "SELECT e.execution_id, e.workflow_id, e.workflow_version, e.event_id, e.trigger_source, e.trace_id, "
    "e.root_span_id, e.parent_span_id, e.engine, e.replay_of, e.created_at, "
    "COALESCE(s.started_at, e.started_at, e.created_at) AS started_at, s.completed_at, s.status, "
    "s.error_message, s.failed_step "
    "FROM execution_state s JOIN executions e ON e.execution_id = s.execution_id AND e.created_at = s.created_at "
    "WHERE s.execution_id = :e")
TRANSITIONS_SQL = sa.text(
    "SELECT seq, status, at, reason, error_message FROM execution_transitions WHERE execution_id = :e ORDER BY seq")
STEPS_SQL = sa.text(
    "SELECT step_id, seq, step_name, step_type, attempt, status, started_at, completed_at, wait_ms, "
    "error_message, response_status, external_request_id, span_id, parent_span_id "
    "FROM steps WHERE execution_id = :e ORDER BY seq, attempt, started_at")

_export = {"enabled": False, "running_delay_s": 30.0}


@dataclass
class SpanData:
    """One span as the ledger knows it, independent of any wire format."""

    trace_id: str
    span_id: str
    parent_span_id: str | None
    name: str
    kind: str
    start_ns: int
    end_ns: int
    attributes: dict[str, Any]
    status: str = "UNSET"
    status_message: str | None = None
    parent_is_remote: bool = False
    events: list[tuple[str, int, dict[str, Any]]] = field(default_factory=list)


@dataclass
class TraceData:
    """The spans of one execution and the resource that produced them."""

    execution_id: UUID
    status: str
    resource: dict[str, Any]
    spans: list[SpanData]


def configure_export(*, enabled: bool, running_delay_s: float = 30.0) -> None:
    """Turn queueing of exports on or off for this process (set by the app from its settings)."""
    _export.update(enabled=enabled, running_delay_s=running_delay_s)


def export_enabled() -> bool:
    """True when finished (and long-running) executions are queued for OTLP export."""
    return bool(_export["enabled"])


def enqueue_export(conn: Connection, *, execution_id: UUID, status: str) -> None:
    """Queue an export in the caller's transaction: the root span on start, the whole trace on finish."""
    if status == "running":
        # Delayed so short runs never send a provisional root: the final row supersedes it first.
        conn.execute(sa.text(
            "INSERT INTO otlp_exports (execution_id, kind, next_attempt_at) "
            "VALUES (:e, 'running', now() + make_interval(secs => :delay))"),
            {"e": execution_id, "delay": float(_export["running_delay_s"])})
    elif status in TERMINAL:
        conn.execute(sa.text("INSERT INTO otlp_exports (execution_id, kind) VALUES (:e, 'final')"),
                     {"e": execution_id})


def parent_for_event(conn: Connection, *, event_id: UUID) -> TraceParent | None:
    """The trace an execution created from this event must continue (its stored traceparent), if any."""
    header = conn.execute(sa.text("SELECT traceparent FROM events WHERE event_id = :e LIMIT 1"),
                          {"e": event_id}).scalar()
    return parse_traceparent(header)


def load_trace(conn: Connection, execution_id: UUID, *, now: datetime | None = None) -> TraceData:
    """The root span and one span per step attempt; a running root ends provisionally at now."""
    row = conn.execute(EXECUTION_SQL, {"e": execution_id}).mappings().one_or_none()
    if row is None:
        raise NotFound(f"execution {execution_id} not found")
    now = now or datetime.now(UTC)
    finished = row["status"] in TERMINAL and row["completed_at"] is not None
    start_ns = _ns(row["started_at"])
    end_ns = max(start_ns, _ns(row["completed_at"] if finished else now))
    common = {"flowledger.execution.id": str(execution_id), "flowledger.workflow.id": row["workflow_id"]}
    root = SpanData(
        trace_id=row["trace_id"], span_id=row["root_span_id"], parent_span_id=row["parent_span_id"],
        parent_is_remote=row["parent_span_id"] is not None, name=row["workflow_id"],
        kind="SERVER" if row["parent_span_id"] or row["trigger_source"] == "webhook" else "INTERNAL",
        start_ns=start_ns, end_ns=end_ns, attributes=_clean({
            **common, "flowledger.workflow.version": row["workflow_version"],
            "flowledger.trigger_source": row["trigger_source"], "flowledger.execution.status": row["status"],
            "flowledger.event.id": _str(row["event_id"]), "flowledger.engine": row["engine"],
            "flowledger.replay_of": _str(row["replay_of"]), "flowledger.failed_step": row["failed_step"],
            "flowledger.execution.provisional": not finished}))
    if row["status"] in FAILED:
        root.status, root.status_message = "ERROR", row["error_message"] or row["status"].replace("_", " ")
    for t in conn.execute(TRANSITIONS_SQL, {"e": execution_id}):
        root.events.append((f"execution.{t.status}", _ns(t.at),
                            _clean({"flowledger.reason": t.reason, "exception.message": t.error_message})))
    spans = [root]
    for step in conn.execute(STEPS_SQL, {"e": execution_id}).mappings():
        spans.append(_step_span(step, row, common, start_ns, end_ns))
    resource = {"service.name": SERVICE_NAME, "flowledger.workflow.id": row["workflow_id"]}
    return TraceData(execution_id=execution_id, status=row["status"], resource=resource, spans=spans)


def build_trace(conn: Connection, execution_id: UUID, *, now: datetime | None = None) -> dict[str, Any]:
    """The execution's trace as an OTLP/JSON ExportTraceServiceRequest, from the database alone."""
    return to_otlp_json(load_trace(conn, execution_id, now=now))


def to_otlp_json(trace: TraceData) -> dict[str, Any]:
    """OTLP/JSON encoding: hex ids, integer enums, 64-bit integers and times as strings."""
    spans = []
    for span in trace.spans:
        out: dict[str, Any] = {
            "traceId": span.trace_id, "spanId": span.span_id, "name": span.name,
            "kind": KIND_CODES[span.kind], "startTimeUnixNano": str(span.start_ns),
            "endTimeUnixNano": str(span.end_ns), "attributes": _otlp_attributes(span.attributes),
            "status": {"code": STATUS_CODES[span.status]}}
        if span.parent_span_id:
            out["parentSpanId"] = span.parent_span_id
        if span.status_message:
            out["status"]["message"] = span.status_message
        if span.events:
            out["events"] = [{"name": name, "timeUnixNano": str(at), "attributes": _otlp_attributes(attrs)}
                             for name, at, attrs in span.events]
        spans.append(out)
    return {"resourceSpans": [{
        "resource": {"attributes": _otlp_attributes(trace.resource)},
        "scopeSpans": [{"scope": {"name": SCOPE_NAME}, "spans": spans}]}]}


def _step_span(step: Any, execution: Any, common: dict[str, Any], root_start: int, root_end: int) -> SpanData:
    started = step["started_at"] or step["completed_at"]
    start_ns = _ns(started) if started else root_start
    end_ns = _ns(step["completed_at"]) if step["completed_at"] else max(start_ns, root_end)
    calls_out = step["step_type"] == "action" and (step["response_status"] or step["external_request_id"])
    span = SpanData(
        trace_id=execution["trace_id"], span_id=step["span_id"],
        parent_span_id=step["parent_span_id"] or execution["root_span_id"],
        name=f"{step['step_name']} #{step['attempt']}", kind="CLIENT" if calls_out else "INTERNAL",
        start_ns=start_ns, end_ns=max(start_ns, end_ns), attributes=_clean({
            **common, "flowledger.step.id": str(step["step_id"]), "flowledger.step.name": step["step_name"],
            "flowledger.step.type": step["step_type"], "flowledger.step.seq": step["seq"],
            "flowledger.step.attempt": step["attempt"], "flowledger.step.status": step["status"],
            "flowledger.step.external_request_id": step["external_request_id"],
            "http.response.status_code": step["response_status"], "flowledger.step.wait_ms": step["wait_ms"]}))
    if step["attempt"] > 1:
        span.events.append(("retry", start_ns, _clean({"flowledger.step.attempt": step["attempt"],
                                                       "flowledger.step.wait_ms": step["wait_ms"]})))
    if step["status"] in FAILED:
        span.status, span.status_message = "ERROR", step["error_message"] or step["status"].replace("_", " ")
    if step["error_message"]:
        span.events.append(("exception", span.end_ns, {"exception.message": step["error_message"]}))
    return span


def _otlp_attributes(attributes: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"key": key, "value": _otlp_value(value)} for key, value in attributes.items()]


def _otlp_value(value: Any) -> dict[str, Any]:
    if isinstance(value, bool):
        return {"boolValue": value}
    if isinstance(value, int):
        return {"intValue": str(value)}
    if isinstance(value, float):
        return {"doubleValue": value}
    return {"stringValue": str(value)}


def _clean(attributes: dict[str, Any]) -> dict[str, Any]:
    """OTel attributes may not be None: absent facts are left out."""
    return {key: value for key, value in attributes.items() if value is not None}


def _ns(value: datetime) -> int:
    delta = value - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1_000


def _str(value: Any) -> str | None:
    return str(value) if value is not None else None
