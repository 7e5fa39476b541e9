"""Reading one execution back whole: steps in order, payloads, audit events, logs, trace ids."""
from __future__ import annotations

from typing import Any
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy import Connection

from services import payloads
from services.errors import NotFound
from services.payloads import PayloadConfig
from services.tracecontext import traceparent

EXECUTION_SQL = sa.text(
    "SELECT s.execution_id, e.workflow_id, e.workflow_version, e.event_id, e.trigger_source, e.trigger_payload, "
    "e.trigger_payload_id, s.status, s.started_at, s.completed_at, s.duration_ms, s.error_message, "
    "s.failed_step, e.trace_id, e.root_span_id, e.parent_span_id, e.replay_of, e.replay_id, e.engine, "
    "e.payload_policy, e.created_at, s.archived_uri "
    "FROM execution_state s JOIN executions e ON e.execution_id = s.execution_id AND e.created_at = s.created_at "
    "WHERE s.execution_id = :e")
STEPS_SQL = sa.text(
    "SELECT step_id, seq, step_name, step_type, attempt AS attempt_count, status, started_at, completed_at, "
    "duration_ms, wait_ms, error_message, response_status, external_request_id, span_id, parent_span_id, "
    "idempotency_key, reused_from_execution, input_payload_id, output_payload_id "
    "FROM steps WHERE execution_id = :e ORDER BY seq, attempt, started_at")
PAYLOAD_META_SQL = sa.text(
    "SELECT payload_id, kind, size_bytes, stored_bytes, sha256, uri, codec, policy FROM payloads "
    "WHERE execution_id = :e")
# The same rows with their bytes: one read serves the metadata and the decoding.
PAYLOAD_ROWS_SQL = sa.text(
    "SELECT payload_id, kind, size_bytes, stored_bytes, sha256, uri, codec, policy, dict_id, data FROM payloads "
    "WHERE execution_id = :e")


def get_execution(conn: Connection, cfg: PayloadConfig, execution_id: UUID, *,
                  include_payloads: bool = True) -> dict[str, Any]:
    """The execution with steps (payloads decoded), audit events, log lines and trace ids."""
    row = conn.execute(EXECUTION_SQL, {"e": execution_id}).mappings().one_or_none()
    if row is None:
        raise NotFound(f"execution {execution_id} not found")
    execution = dict(row)
    rows = conn.execute(PAYLOAD_ROWS_SQL if include_payloads else PAYLOAD_META_SQL, {"e": execution_id}).all()
    meta = {m.payload_id: m for m in rows}
    if execution["trigger_payload"] is None and execution["trigger_payload_id"]:
        execution["trigger_payload"] = payloads.load(conn, cfg, execution["trigger_payload_id"])
    steps = [dict(s) for s in conn.execute(STEPS_SQL, {"e": execution_id}).mappings()]
    context_id = next((m.payload_id for m in meta.values() if m.kind == "context"), None)
    wanted = {s[k] for s in steps for k in ("input_payload_id", "output_payload_id") if s[k]}
    wanted |= {context_id} if context_id else set()
    values = payloads.decode_rows(conn, cfg, rows, wanted) if include_payloads and wanted else {}
    execution["steps"] = [_step(s, meta, values) for s in steps]
    execution["context_snapshot"] = values.get(context_id) if context_id else None
    execution["audit_events"] = audit_events(conn, execution_id)
    execution["logs"] = [dict(r) for r in conn.execute(sa.text(
        "SELECT \"timestamp\", level, message, step_id FROM execution_logs WHERE execution_id = :e "
        "ORDER BY \"timestamp\", id"), {"e": execution_id}).mappings()]
    execution["traceparent"] = traceparent(execution["trace_id"], execution["root_span_id"])
    return execution


def audit_events(conn: Connection, execution_id: UUID, *, event_type: str | None = None) -> list[dict[str, Any]]:
    """An execution's audit events in the order they happened, optionally of one type."""
    return [dict(r) for r in conn.execute(sa.text(
        "SELECT id, event_type, \"timestamp\", metadata FROM execution_audit_events WHERE execution_id = :e "
        "AND (CAST(:t AS text) IS NULL OR event_type = :t) ORDER BY \"timestamp\", id"),
        {"e": execution_id, "t": event_type}).mappings()]


def _step(step: dict[str, Any], meta: dict, values: dict) -> dict:
    for kind in ("input", "output"):
        payload_id = step.pop(f"{kind}_payload_id")
        info = meta.get(payload_id) if payload_id else None
        step[f"{kind}_meta"] = _meta(info) if info else None
        step[kind] = values.get(payload_id) if payload_id else None
    return step


def _meta(info: Any) -> dict[str, Any]:
    return {"payload_id": info.payload_id, "size_bytes": info.size_bytes, "stored_bytes": info.stored_bytes,
            "sha256": info.sha256, "offloaded_uri": info.uri, "codec": info.codec, "policy": info.policy,
            "kept": info.policy == "full"}
