"""The recording service: executions, transitions, step attempts and audit events, append-only."""
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

from services import payloads, text_extraction, tracing
from services.errors import Conflict, InvalidInput, NotFound
from services.payload_policy import PayloadPolicy, for_workflow, masking_for
from services.payloads import PayloadConfig
from services.tracecontext import TraceParent, new_span_id, new_trace_id

log = logging.getLogger(__name__)

TRIGGER_SOURCES = ("webhook", "schedule", "manual")
STEP_TYPES = ("action", "condition", "transform", "wait")
STEP_STATUSES = ("running", "completed", "failed", "timed_out", "skipped", "cancelled")
TERMINAL = ("completed", "failed", "timed_out", "cancelled")
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


@dataclass(frozen=True)
class StepAttempt:
    """One attempt of one step, as the runner or an external engine saw it."""

    step_name: str
    step_type: str
    seq: int
    status: str
    attempt: int = 1
    started_at: datetime | None = None
    completed_at: datetime | None = None
    input: Any = NO_PAYLOAD
    output: Any = NO_PAYLOAD
    error_message: str | None = None
    response_status: int | None = None
    external_request_id: str | None = None
    wait_ms: int | None = None
    idempotency_key: str | None = None
    reused_from_execution: UUID | None = None
    step_id: UUID | None = None
    span_id: str | None = None
    parent_span_id: str | None = None


@dataclass(frozen=True)
class StepRecord:
    """Ids of a recorded step attempt."""

    step_id: UUID
    span_id: str
    parent_span_id: str | None
    input_payload_id: UUID | None
    output_payload_id: UUID | None


def utcnow() -> datetime:
    """The recording clock."""
    return datetime.now(UTC)


def create_execution(conn: Connection, cfg: PayloadConfig, new: NewExecution) -> ExecutionRecord:
    """Insert an execution (state pending) and its CREATED audit event; re-sent ids are returned as-is."""
    if new.trigger_source not in TRIGGER_SOURCES:
        raise InvalidInput(f"trigger_source must be one of {', '.join(TRIGGER_SOURCES)}")
    execution_id = new.execution_id or uuid.uuid4()
    existing = _existing(conn, execution_id)
    if existing:
        return existing
    trace_id = new.parent.trace_id if new.parent else new_trace_id()
    root_span = new_span_id()
    policy = new.payload_policy or for_workflow(conn, workflow_id=new.workflow_id, version=new.workflow_version,
                                                default=cfg.default_policy)
    masking = masking_for(conn, workflow_id=new.workflow_id, version=new.workflow_version)
    trigger, trigger_payload_id = _trigger_payload(conn, cfg, new, execution_id, policy, masking)
    conn.execute(sa.text(
        "INSERT INTO executions (execution_id, workflow_id, workflow_version, event_id, trigger_source, "
        "trigger_payload, trigger_payload_id, trace_id, root_span_id, parent_span_id, replay_of, replay_id, "
        "engine, payload_policy, started_at) VALUES (:id, :wf, :ver, :ev, :src, CAST(:payload AS jsonb), "
        ":pid, :trace, :root, :parent, :replay_of, :replay_id, :engine, :policy, :started)"),
        {"id": execution_id, "wf": new.workflow_id, "ver": new.workflow_version, "ev": new.event_id,
         "src": new.trigger_source, "payload": trigger, "pid": trigger_payload_id, "trace": trace_id,
         "root": root_span, "parent": new.parent.span_id if new.parent else None, "replay_of": new.replay_of,
         "replay_id": new.replay_id, "engine": new.engine, "policy": policy.encode(),
         "started": new.started_at})
    record_audit(conn, execution_id=execution_id, event_type="CREATED", at=new.started_at,
                 metadata={"workflow_id": new.workflow_id, "workflow_version": new.workflow_version,
                           "trigger_type": new.trigger_source, "event_id": _str(new.event_id),
                           "replay_of": _str(new.replay_of)})
    return ExecutionRecord(execution_id, trace_id, root_span, policy=policy, masking=masking)


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
    detail = dict(detail or {})
    if status in TERMINAL and "duration_ms" not in detail and current.started_at is not None:
        detail["duration_ms"] = max(0, int((at - current.started_at).total_seconds() * 1000))
    try:
        seq = conn.execute(sa.text(
            "INSERT INTO execution_transitions (execution_id, seq, status, at, reason, error_message, "
            "failed_step, detail) SELECT :e, COALESCE(max(seq), 0) + 1, :s, :at, :reason, :err, :step, "
            "CAST(:detail AS jsonb) FROM execution_transitions WHERE execution_id = :e RETURNING seq"),
            {"e": execution_id, "s": status, "at": at, "reason": reason, "err": error_message,
             "step": failed_step, "detail": _json(detail)}).scalar_one()
    except sa.exc.IntegrityError:
        raise Conflict(f"execution {execution_id} changed concurrently or already ended") from None
    record_audit(conn, execution_id=execution_id, event_type="STATE_CHANGE", at=at,
                 metadata={"from_state": current.status, "to_state": status, "reason": reason})
    if status in AUDIT_FOR_STATUS:
        record_audit(conn, execution_id=execution_id, event_type=AUDIT_FOR_STATUS[status], at=at,
                     metadata={**_terminal_metadata(status, detail, error_message, failed_step), **(audit or {})})
    if tracing.export_enabled():
        tracing.enqueue_export(conn, execution_id=execution_id, status=status)
    return seq


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
        policy, masking = _execution_rules(conn, execution_id)
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


def record_step(conn: Connection, cfg: PayloadConfig, *, execution_id: UUID, workflow_id: str,
                attempt: StepAttempt, policy: PayloadPolicy | None = None,
                masking: tuple[tuple[str, ...], tuple[str, ...]] | None = None) -> StepRecord:
    """Append one step attempt with its masked, compressed input and output.

    policy and masking are the execution's payload rules when the caller already knows them (saves a query).
    """
    _validate_step(attempt)
    step_id = attempt.step_id or uuid.uuid4()
    span_id = attempt.span_id or new_span_id()
    parent = attempt.parent_span_id or _predecessor_span(conn, execution_id)
    texts: list[str] = []
    ids: dict[str, UUID | None] = {"input": None, "output": None}
    if policy is None or masking is None:
        policy, masking = _execution_rules(conn, execution_id)
    for kind, value in (("input", attempt.input), ("output", attempt.output)):
        if value is not NO_PAYLOAD:
            ref = payloads.store(conn, cfg, execution_id=execution_id, kind=kind, value=value,
                                 workflow_id=workflow_id, step_id=step_id, policy=policy, masking=masking)
            ids[kind] = ref.payload_id
            texts.append(ref.search_text)
    if attempt.error_message:
        texts.append(attempt.error_message)
    duration = _duration_ms(attempt.started_at, attempt.completed_at)
    conn.execute(sa.text(
        "INSERT INTO steps (step_id, execution_id, seq, step_name, step_type, attempt, status, started_at, "
        "completed_at, duration_ms, wait_ms, input_payload_id, output_payload_id, error_message, "
        "response_status, external_request_id, span_id, parent_span_id, idempotency_key, "
        "reused_from_execution, search_text) VALUES (:id, :e, :seq, :name, :type, :attempt, :status, "
        ":started, :completed, :duration, :wait, :in, :out, :err, :resp, :ext, :span, :parent, :key, "
        ":reused, :text)"),
        {"id": step_id, "e": execution_id, "seq": attempt.seq, "name": attempt.step_name,
         "type": attempt.step_type, "attempt": attempt.attempt, "status": attempt.status,
         "started": attempt.started_at, "completed": attempt.completed_at, "duration": duration,
         "wait": attempt.wait_ms, "in": ids["input"], "out": ids["output"], "err": attempt.error_message,
         "resp": attempt.response_status, "ext": attempt.external_request_id, "span": span_id,
         "parent": parent, "key": attempt.idempotency_key, "reused": attempt.reused_from_execution,
         "text": text_extraction.step_text(texts)})
    if attempt.idempotency_key and attempt.status == "completed" and attempt.reused_from_execution is None:
        conn.execute(sa.text(
            "INSERT INTO step_success_keys (idempotency_key, step_id, execution_id, output_payload_id) "
            "VALUES (:k, :s, :e, :o) ON CONFLICT (idempotency_key) DO NOTHING"),
            {"k": attempt.idempotency_key, "s": step_id, "e": execution_id, "o": ids["output"]})
    return StepRecord(step_id, span_id, parent, ids["input"], ids["output"])


def append_log(conn: Connection, *, execution_id: UUID, message: str, level: str = "info",
               step_id: UUID | None = None, at: datetime | None = None) -> None:
    """Append one log line to an execution."""
    conn.execute(sa.text(
        "INSERT INTO execution_logs (execution_id, step_id, \"timestamp\", level, message) "
        "VALUES (:e, :s, COALESCE(:at, now()), :level, :msg)"),
        {"e": execution_id, "s": step_id, "at": at, "level": level, "msg": message})


def record_audit(conn: Connection, *, execution_id: UUID, event_type: str, metadata: dict[str, Any],
                 at: datetime | None = None) -> bool:
    """Append an audit event in the caller's transaction; a failure is logged, never raised (seed 004).

    The timestamp is the ledger's clock, so the trail orders by when facts were recorded; the
    reporter's own time of the fact, when given, is kept in metadata as occurred_at.
    """
    if at is not None:
        metadata = {**metadata, "occurred_at": at.isoformat()}
    try:
        with conn.begin_nested():
            conn.execute(sa.text(
                "INSERT INTO execution_audit_events (execution_id, event_type, metadata) "
                "VALUES (:e, :t, CAST(:m AS jsonb))"),
                {"e": execution_id, "t": event_type, "m": _json(metadata)})
        return True
    except SQLAlchemyError:
        log.exception("audit event %s for execution %s could not be written", event_type, execution_id)
        return False


def _existing(conn: Connection, execution_id: UUID) -> ExecutionRecord | None:
    row = conn.execute(sa.text(
        "SELECT e.trace_id, e.root_span_id FROM execution_state s JOIN executions e "
        "ON e.execution_id = s.execution_id AND e.created_at = s.created_at WHERE s.execution_id = :e"),
        {"e": execution_id}).one_or_none()
    return ExecutionRecord(execution_id, row.trace_id, row.root_span_id, created=False) if row else None


def _trigger_payload(conn: Connection, cfg: PayloadConfig, new: NewExecution, execution_id: UUID,
                     policy: PayloadPolicy, masking: tuple[tuple[str, ...], tuple[str, ...]]
                     ) -> tuple[str | None, UUID | None]:
    """The masked trigger payload as JSON text for the GIN-indexed column, offloaded when too large.

    Under a summary or off policy the column stays empty, so nothing the policy drops is indexed.
    """
    if new.trigger_payload is None:
        return None, None
    clean = payloads.mask(cfg, new.trigger_payload, extra_keys=masking[0], extra_paths=masking[1])
    if policy.log_payload != "full" or policy.max_payload_bytes is not None:
        size = len(json.dumps(clean, ensure_ascii=False, separators=(",", ":"), default=str).encode())
        if policy.applied(size) != "full":
            ref = payloads.store(conn, cfg, execution_id=execution_id, kind="trigger", value=clean,
                                 workflow_id=new.workflow_id, masked=True, policy=policy)
            return None, ref.payload_id
    try:
        text = json.dumps(clean, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"trigger_payload is not storable JSON: {exc}") from None
    if "\\u0000" in text:
        raise InvalidInput("trigger_payload contains \\u0000, which PostgreSQL JSONB cannot store")
    if len(text.encode()) <= cfg.inline_max_bytes:
        return text, None
    ref = payloads.store(conn, cfg, execution_id=execution_id, kind="trigger", value=clean,
                         workflow_id=new.workflow_id, masked=True)
    return None, ref.payload_id


def _execution_rules(conn: Connection, execution_id: UUID) -> tuple[PayloadPolicy, tuple[tuple[str, ...], ...]]:
    """The payload policy an execution was created under and its workflow version's masking rules."""
    row = conn.execute(sa.text(
        "SELECT e.payload_policy, e.workflow_id, e.workflow_version FROM executions e "
        "WHERE e.execution_id = :e LIMIT 1"), {"e": execution_id}).one_or_none()
    if row is None:
        raise NotFound(f"execution {execution_id} not found")
    masking = masking_for(conn, workflow_id=row.workflow_id, version=row.workflow_version)
    return PayloadPolicy.decode(row.payload_policy), masking


def _predecessor_span(conn: Connection, execution_id: UUID) -> str | None:
    return conn.execute(sa.text(
        "SELECT COALESCE((SELECT span_id FROM steps WHERE execution_id = :e ORDER BY seq DESC, attempt DESC "
        "LIMIT 1), (SELECT root_span_id FROM executions WHERE execution_id = :e LIMIT 1))"),
        {"e": execution_id}).scalar()


def _validate_step(attempt: StepAttempt) -> None:
    problems = []
    if attempt.step_type not in STEP_TYPES:
        problems.append(f"step_type must be one of {', '.join(STEP_TYPES)}")
    if attempt.status not in STEP_STATUSES:
        problems.append(f"step status must be one of {', '.join(STEP_STATUSES)}")
    if attempt.attempt < 1 or attempt.seq < 0:
        problems.append("attempt must be >= 1 and seq >= 0")
    if problems:
        raise InvalidInput(f"step {attempt.step_name!r} is invalid", problems)


def _terminal_metadata(status: str, detail: dict[str, Any], error: str | None, step: str | None) -> dict:
    if status == "completed":
        return {"duration_ms": detail.get("duration_ms"), "task_count": detail.get("task_count")}
    if status in ("failed", "timed_out"):
        return {"error_message": error, "failed_task_id": step, "duration_ms": detail.get("duration_ms")}
    if status == "running":
        return {}
    return {"duration_ms": detail.get("duration_ms")}


def _duration_ms(start: datetime | None, end: datetime | None) -> int | None:
    if start is None or end is None:
        return None
    return max(0, int((end - start).total_seconds() * 1000))


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)


def _str(value: Any) -> str | None:
    return str(value) if value is not None else None
