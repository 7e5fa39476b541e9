"""The recording service: executions, their transitions, audit events and logs, append-only (steps: step_recording)."""
from __future__ import annotations

import json
import logging
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy import Connection
from sqlalchemy.exc import SQLAlchemyError

from services import payloads, tracing
from services.errors import Conflict, InvalidInput, NotFound
from services.payload_policy import PayloadPolicy, for_workflow, masking_for
from services.payloads import PayloadConfig
from services.tracecontext import TraceParent, new_span_id, new_trace_id

log = logging.getLogger(__name__)

TRIGGER_SOURCES = ("webhook", "schedule", "manual")
TERMINAL = ("completed", "failed", "timed_out", "cancelled")
EXECUTION_STATUSES = ("pending", "running", *TERMINAL)
AUDIT_FOR_STATUS = {"running": "STARTED", "completed": "COMPLETED", "failed": "FAILED",
                    "timed_out": "TIMED_OUT", "cancelled": "CANCELLED"}
NO_PAYLOAD = object()


@dataclass(frozen=True)
class NewExecution:
    """What is known when an execution begins."""

    workflow_id: str
    trigger_source: str = "manual"
    trigger_payload: Any = None
    workflow_version: int | None = None
    event_id: UUID | None = None
    execution_id: UUID | None = None
    parent: TraceParent | None = None
    replay_of: UUID | None = None
    replay_id: UUID | None = None
    started_at: datetime | None = None
    engine: str = "flowledger"
    payload_policy: PayloadPolicy | None = None


@dataclass(frozen=True)
class ExecutionRecord:
    """The ids an execution was recorded under; created is False for a re-sent execution."""

    execution_id: UUID
    trace_id: str
    root_span_id: str
    created: bool = True
    policy: PayloadPolicy | None = None
    masking: tuple[tuple[str, ...], tuple[str, ...]] | None = None


def utcnow() -> datetime:
    """The recording clock."""
    return datetime.now(UTC)


EXECUTION_COLUMNS = ("execution_id", "workflow_id", "workflow_version", "event_id", "trigger_source",
                     "trigger_payload", "trigger_payload_id", "trace_id", "root_span_id", "parent_span_id",
                     "replay_of", "replay_id", "engine", "payload_policy", "started_at")
INSERT_EXECUTION = sa.text(
    f"INSERT INTO executions ({', '.join(EXECUTION_COLUMNS)}) VALUES ("
    + ", ".join("CAST(:trigger_payload AS jsonb)" if c == "trigger_payload" else ":" + c for c in EXECUTION_COLUMNS)
    + ")")
INSERT_AUDIT = sa.text("INSERT INTO execution_audit_events (execution_id, event_type, metadata) "
                       "VALUES (:execution_id, :event_type, CAST(:metadata AS jsonb))")
INSERT_LOG = sa.text("INSERT INTO execution_logs (execution_id, step_id, \"timestamp\", level, message) "
                     "VALUES (:execution_id, :step_id, COALESCE(:at, now()), :level, :message)")


@dataclass(frozen=True)
class PlannedExecution:
    """A new execution's executions row (keyed by column) and its trigger payload rows, not yet inserted."""

    row: dict[str, Any]
    payloads: tuple[payloads.PreparedPayload, ...]
    record: ExecutionRecord


def create_execution(conn: Connection, cfg: PayloadConfig, new: NewExecution) -> ExecutionRecord:
    """Insert an execution (state pending) and its CREATED audit event; re-sent ids are returned as-is."""
    if new.trigger_source not in TRIGGER_SOURCES:
        raise InvalidInput(f"trigger_source must be one of {', '.join(TRIGGER_SOURCES)}")
    execution_id = new.execution_id or uuid.uuid4()
    known = _existing(conn, execution_id)
    if known:
        return known
    policy = new.payload_policy or for_workflow(conn, workflow_id=new.workflow_id, version=new.workflow_version,
                                                default=cfg.default_policy)
    masking = masking_for(conn, workflow_id=new.workflow_id, version=new.workflow_version)
    planned = plan_execution(conn, cfg, new, execution_id=execution_id, policy=policy, masking=masking)
    for prepared in planned.payloads:
        conn.execute(payloads.INSERT_PAYLOAD, prepared.row)
    conn.execute(INSERT_EXECUTION, planned.row)
    record_audit(conn, execution_id=execution_id, event_type="CREATED", at=new.started_at,
                 metadata=created_metadata(new))
    return planned.record


def plan_execution(conn: Connection, cfg: PayloadConfig, new: NewExecution, *, execution_id: UUID,
                   policy: PayloadPolicy, masking: tuple[tuple[str, ...], tuple[str, ...]]) -> PlannedExecution:
    """The row of a new execution: its trace ids (continuing new.parent) and masked trigger payload."""
    trace_id = new.parent.trace_id if new.parent else new_trace_id()
    root_span = new_span_id()
    trigger, prepared = _trigger_payload(conn, cfg, new, execution_id, policy, masking)
    row = {"execution_id": execution_id, "workflow_id": new.workflow_id, "workflow_version": new.workflow_version,
           "event_id": new.event_id, "trigger_source": new.trigger_source, "trigger_payload": trigger,
           "trigger_payload_id": prepared.ref.payload_id if prepared else None, "trace_id": trace_id,
           "root_span_id": root_span, "parent_span_id": new.parent.span_id if new.parent else None,
           "replay_of": new.replay_of, "replay_id": new.replay_id, "engine": new.engine,
           "payload_policy": policy.encode(), "started_at": new.started_at}
    record = ExecutionRecord(execution_id, trace_id, root_span, policy=policy, masking=masking)
    return PlannedExecution(row, (prepared,) if prepared else (), record)


def created_metadata(new: NewExecution) -> dict[str, Any]:
    """The CREATED audit event's metadata."""
    return {"workflow_id": new.workflow_id, "workflow_version": new.workflow_version,
            "trigger_type": new.trigger_source, "event_id": _str(new.event_id), "replay_of": _str(new.replay_of)}


def transition(conn: Connection, *, execution_id: UUID, status: str, at: datetime | None = None,
               reason: str | None = None, error_message: str | None = None, failed_step: str | None = None,
               detail: dict[str, Any] | None = None, audit: dict[str, Any] | None = None) -> int:
    """Append a status transition and its audit events (STATE_CHANGE plus STARTED/COMPLETED/...)."""
    at = at or utcnow()
    current = conn.execute(sa.text(
        "SELECT status, started_at FROM execution_state WHERE execution_id = :e"),
        {"e": execution_id}).one_or_none()
    if current is None:
        raise NotFound(f"execution {execution_id} not found")
    if current.status in TERMINAL:
        raise Conflict(f"execution {execution_id} already ended as {current.status}")
    detail = outcome_detail(status, at=at, started_at=current.started_at, detail=detail)
    try:
        seq = conn.execute(sa.text(
            "INSERT INTO execution_transitions (execution_id, seq, status, at, reason, error_message, "
            "failed_step, detail) SELECT :e, COALESCE(max(seq), 0) + 1, :s, :at, :reason, :err, :step, "
            "CAST(:detail AS jsonb) FROM execution_transitions WHERE execution_id = :e RETURNING seq"),
            {"e": execution_id, "s": status, "at": at, "reason": reason, "err": error_message,
             "step": failed_step, "detail": _json(detail)}).scalar_one()
    except sa.exc.IntegrityError:
        raise Conflict(f"execution {execution_id} changed concurrently or already ended") from None
    for event_type, metadata in transition_audits(from_status=current.status, status=status, reason=reason,
                                                  detail=detail, error_message=error_message,
                                                  failed_step=failed_step, audit=audit):
        record_audit(conn, execution_id=execution_id, event_type=event_type, at=at, metadata=metadata)
    if tracing.export_enabled():
        tracing.enqueue_export(conn, execution_id=execution_id, status=status)
    return seq


def outcome_detail(status: str, *, at: datetime, started_at: datetime | None,
                   detail: dict[str, Any] | None) -> dict[str, Any]:
    """A transition's detail; an ending one gets its duration from the start unless it brings its own."""
    detail = dict(detail or {})
    if status in TERMINAL and "duration_ms" not in detail and started_at is not None:
        detail["duration_ms"] = max(0, int((at - started_at).total_seconds() * 1000))
    return detail


def transition_audits(*, from_status: str, status: str, reason: str | None, detail: dict[str, Any],
                      error_message: str | None, failed_step: str | None,
                      audit: dict[str, Any] | None) -> list[tuple[str, dict[str, Any]]]:
    """The audit events (type, metadata) a transition writes: STATE_CHANGE plus STARTED/COMPLETED/..."""
    events = [("STATE_CHANGE", {"from_state": from_status, "to_state": status, "reason": reason})]
    if status in AUDIT_FOR_STATUS:
        events.append((AUDIT_FOR_STATUS[status],
                       {**_terminal_metadata(status, detail, error_message, failed_step), **(audit or {})}))
    return events


def start_execution(conn: Connection, *, execution_id: UUID, at: datetime | None = None) -> int:
    """Mark an execution running."""
    return transition(conn, execution_id=execution_id, status="running", at=at)


def finish_execution(conn: Connection, *, execution_id: UUID, status: str, at: datetime | None = None,
                     error_message: str | None = None, failed_step: str | None = None,
                     reason: str | None = None, audit: dict[str, Any] | None = None,
                     context: Any = NO_PAYLOAD, cfg: PayloadConfig | None = None) -> int:
    """Append the final outcome (completed, failed, timed_out or cancelled) and the final context snapshot."""
    if status not in TERMINAL:
        raise InvalidInput(f"final status must be one of {', '.join(TERMINAL)}")
    if context is not NO_PAYLOAD and cfg is not None:
        workflow_id = conn.execute(sa.text("SELECT workflow_id FROM executions WHERE execution_id = :e LIMIT 1"),
                                   {"e": execution_id}).scalar_one()
        policy, masking = execution_rules(conn, execution_id)
        payloads.store(conn, cfg, execution_id=execution_id, kind="context", value=context,
                       workflow_id=workflow_id, policy=policy, masking=masking)
    task_count = conn.execute(sa.text(
        "SELECT count(DISTINCT seq) FROM steps WHERE execution_id = :e"), {"e": execution_id}).scalar_one()
    return transition(conn, execution_id=execution_id, status=status, at=at, reason=reason,
                      error_message=error_message, failed_step=failed_step,
                      detail={"task_count": task_count}, audit=audit)


def cancel_execution(conn: Connection, *, execution_id: UUID, cancelled_by: str, reason: str | None,
                     pending_steps: int, at: datetime | None = None) -> int:
    """Cancel an execution, recording who, why and how many steps never ran."""
    return finish_execution(conn, execution_id=execution_id, status="cancelled", at=at, reason=reason,
                            audit={"cancelled_by": cancelled_by, "reason": reason,
                                   "pending_task_count": pending_steps})


def append_log(conn: Connection, *, execution_id: UUID, message: str, level: str = "info",
               step_id: UUID | None = None, at: datetime | None = None) -> None:
    """Append one log line to an execution."""
    conn.execute(INSERT_LOG, {"execution_id": execution_id, "step_id": step_id, "at": at, "level": level,
                              "message": message})


def record_audit(conn: Connection, *, execution_id: UUID, event_type: str, metadata: dict[str, Any],
                 at: datetime | None = None) -> bool:
    """Append an audit event in the caller's transaction; a failure is logged, never raised (seed 004).

    The timestamp is the ledger's clock, so the trail orders by when facts were recorded; the
    reporter's own time of the fact, when given, is kept in metadata as occurred_at.
    """
    try:
        with conn.begin_nested():
            conn.execute(INSERT_AUDIT, audit_row(execution_id=execution_id, event_type=event_type,
                                                 metadata=metadata, at=at))
        return True
    except SQLAlchemyError:
        log.exception("audit event %s for execution %s could not be written", event_type, execution_id)
        return False


def audit_row(*, execution_id: UUID, event_type: str, metadata: dict[str, Any],
              at: datetime | None = None) -> dict[str, Any]:
    """An execution_audit_events row; the reporter's own time of the fact goes into metadata as occurred_at."""
    if at is not None:
        metadata = {**metadata, "occurred_at": at.isoformat()}
    return {"execution_id": execution_id, "event_type": event_type, "metadata": _json(metadata)}


def existing(conn: Connection, execution_ids: list[UUID]) -> dict[UUID, ExecutionRecord]:
    """The already recorded executions among these ids (created=False), in one query."""
    rows = conn.execute(sa.text(
        "SELECT s.execution_id, e.trace_id, e.root_span_id FROM execution_state s JOIN executions e "
        "ON e.execution_id = s.execution_id AND e.created_at = s.created_at WHERE s.execution_id = ANY(:ids)"),
        {"ids": list(execution_ids)}).all()
    return {r.execution_id: ExecutionRecord(r.execution_id, r.trace_id, r.root_span_id, created=False)
            for r in rows}


def _existing(conn: Connection, execution_id: UUID) -> ExecutionRecord | None:
    return existing(conn, [execution_id]).get(execution_id)


def _trigger_payload(conn: Connection, cfg: PayloadConfig, new: NewExecution, execution_id: UUID,
                     policy: PayloadPolicy, masking: tuple[tuple[str, ...], tuple[str, ...]]
                     ) -> tuple[str | None, payloads.PreparedPayload | None]:
    """The masked trigger payload as JSON text for the GIN-indexed column, offloaded when too large.

    Under a summary or off policy the column stays empty, so nothing the policy drops is indexed.
    """
    if new.trigger_payload is None:
        return None, None
    clean = payloads.mask(cfg, new.trigger_payload, extra_keys=masking[0], extra_paths=masking[1])
    if policy.log_payload != "full" or policy.max_payload_bytes is not None:
        size = len(json.dumps(clean, ensure_ascii=False, separators=(",", ":"), default=str).encode())
        if policy.applied(size) != "full":
            return None, payloads.prepare(conn, cfg, execution_id=execution_id, kind="trigger", value=clean,
                                          workflow_id=new.workflow_id, masked=True, policy=policy)
    try:
        text = json.dumps(clean, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"trigger_payload is not storable JSON: {exc}") from None
    if "\\u0000" in text:
        raise InvalidInput("trigger_payload contains \\u0000, which PostgreSQL JSONB cannot store")
    if len(text.encode()) <= cfg.inline_max_bytes:
        return text, None
    return None, payloads.prepare(conn, cfg, execution_id=execution_id, kind="trigger", value=clean,
                                  workflow_id=new.workflow_id, masked=True)


def execution_rules(conn: Connection, execution_id: UUID) -> tuple[PayloadPolicy, tuple[tuple[str, ...], ...]]:
    """The payload policy an execution was created under and its workflow version's masking rules."""
    row = conn.execute(sa.text(
        "SELECT e.payload_policy, e.workflow_id, e.workflow_version FROM executions e "
        "WHERE e.execution_id = :e LIMIT 1"), {"e": execution_id}).one_or_none()
    if row is None:
        raise NotFound(f"execution {execution_id} not found")
    masking = masking_for(conn, workflow_id=row.workflow_id, version=row.workflow_version)
    return PayloadPolicy.decode(row.payload_policy), masking


def _terminal_metadata(status: str, detail: dict[str, Any], error: str | None, step: str | None) -> dict:
    if status == "completed":
        return {"duration_ms": detail.get("duration_ms"), "task_count": detail.get("task_count")}
    if status in ("failed", "timed_out"):
        return {"error_message": error, "failed_task_id": step, "duration_ms": detail.get("duration_ms")}
    if status == "running":
        return {}
    return {"duration_ms": detail.get("duration_ms")}


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)


def _str(value: Any) -> str | None:
    return str(value) if value is not None else None
