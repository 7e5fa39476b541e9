"""Batches of executions recorded in bulk: the rules of services.recording, a few statements per table.

Recording one by one costs about fifty round trips per execution (every step, payload, transition
and audit event is its own INSERT, each audit event in its own savepoint). Here the rows are built
in Python by the same helpers (masking, policy, compression, offloading, search text, trace ids)
and written with one COPY per hot table in the caller's transaction. Step rows are streamed into
their COPY while later steps are still being prepared, so PostgreSQL indexes them on the other core.
"""
from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID, uuid4

import psycopg
import sqlalchemy as sa
from sqlalchemy import Connection
from sqlalchemy.exc import SQLAlchemyError

from services import payloads, recording, step_recording, tracing
from services.errors import InvalidInput
from services.payload_policy import for_workflow, masking_for
from services.payloads import PayloadConfig
from services.recording import NO_PAYLOAD, TERMINAL, ExecutionRecord, NewExecution
from services.step_recording import StepAttempt

log = logging.getLogger(__name__)

STATUSES = recording.EXECUTION_STATUSES
TRANSITION_COLUMNS = ("execution_id", "seq", "status", "at", "reason", "error_message", "failed_step", "detail")


@dataclass(frozen=True)
class BatchItem:
    """One execution of a batch: how it began, its step attempts in order, log lines and how it ended.

    Steps without a parent_span_id are chained in order from the execution's root span.
    """

    new: NewExecution
    status: str
    steps: Sequence[StepAttempt] = ()
    logs: Sequence[tuple[str, str, datetime | None]] = ()  # (message, level, at)
    completed_at: datetime | None = None
    error_message: str | None = None
    failed_step: str | None = None
    context: Any = NO_PAYLOAD


@dataclass
class _Rows:
    executions: list[dict[str, Any]] = field(default_factory=list)
    payloads: list[dict[str, Any]] = field(default_factory=list)
    transitions: list[dict[str, Any]] = field(default_factory=list)
    audits: list[dict[str, Any]] = field(default_factory=list)
    logs: list[dict[str, Any]] = field(default_factory=list)
    exports: list[tuple[UUID, str]] = field(default_factory=list)


def record_batch(conn: Connection, cfg: PayloadConfig, items: Sequence[BatchItem], *,
                 now: datetime | None = None) -> list[ExecutionRecord]:
    """Record new executions with their steps in the caller's transaction; re-sent ids change nothing.

    One record per item, in order; an id already recorded (or repeated in the batch) comes back
    with created=False. A concurrent request recording the same id first makes this raise
    IntegrityError, like the one-by-one path, so the caller can retry and see it as existing.
    """
    now = now or recording.utcnow()
    for item in items:
        if item.new.trigger_source not in recording.TRIGGER_SOURCES:
            raise InvalidInput(f"trigger_source must be one of {', '.join(recording.TRIGGER_SOURCES)}")
        if item.status not in STATUSES:
            raise InvalidInput(f"status must be one of {', '.join(STATUSES)}")
    ids = [item.new.execution_id or uuid4() for item in items]
    known = recording.existing(conn, ids)
    rows, rules = _Rows(), {}
    records: list[ExecutionRecord] = []
    created: list[tuple[BatchItem, ExecutionRecord]] = []
    for item, execution_id in zip(items, ids, strict=True):
        if execution_id in known:
            records.append(known[execution_id])
            continue
        record = _plan(conn, cfg, rows, item, execution_id, now, rules)
        known[execution_id] = dataclasses.replace(record, created=False)
        records.append(record)
        created.append((item, record))
    if created:
        _write(conn, cfg, rows, created)
    return records


def _plan(conn: Connection, cfg: PayloadConfig, rows: _Rows, item: BatchItem, execution_id: UUID,
          now: datetime, rules: dict) -> ExecutionRecord:
    """Everything of one new execution except its steps (those are streamed while writing)."""
    new = item.new
    key = (new.workflow_id, new.workflow_version)
    if key not in rules:  # one look-up per workflow version, not per execution
        rules[key] = (for_workflow(conn, workflow_id=new.workflow_id, version=new.workflow_version,
                                   default=cfg.default_policy),
                      masking_for(conn, workflow_id=new.workflow_id, version=new.workflow_version))
    policy, masking = (new.payload_policy or rules[key][0]), rules[key][1]
    planned = recording.plan_execution(conn, cfg, new, execution_id=execution_id, policy=policy, masking=masking)
    rows.executions.append(planned.row)
    rows.payloads.extend(p.row for p in planned.payloads)
    _audit(rows, execution_id, [("CREATED", recording.created_metadata(new))], new.started_at)
    rows.logs.extend({"execution_id": execution_id, "step_id": None, "at": at, "level": level, "message": message}
                     for message, level, at in item.logs)
    if item.status == "pending":
        return planned.record
    started = new.started_at or now
    _transition(rows, execution_id, seq=1, status="running", at=started, from_status="pending")
    if item.status in TERMINAL:
        if item.context is not NO_PAYLOAD:
            context = payloads.prepare(conn, cfg, execution_id=execution_id, kind="context", value=item.context,
                                       workflow_id=new.workflow_id, policy=policy, masking=masking)
            rows.payloads.append(context.row)
        # The one-by-one path counts distinct seq among the steps it has just written: the same steps.
        task_count = len({step.seq for step in item.steps})
        _transition(rows, execution_id, seq=2, status=item.status, at=item.completed_at or now,
                    from_status="running", started=started, detail={"task_count": task_count},
                    error_message=item.error_message, failed_step=item.failed_step)
    return planned.record


def _transition(rows: _Rows, execution_id: UUID, *, seq: int, status: str, at: datetime, from_status: str,
                started: datetime | None = None, detail: dict[str, Any] | None = None,
                error_message: str | None = None, failed_step: str | None = None) -> None:
    detail = recording.outcome_detail(status, at=at, started_at=started, detail=detail)
    rows.transitions.append({"execution_id": execution_id, "seq": seq, "status": status, "at": at, "reason": None,
                             "error_message": error_message, "failed_step": failed_step,
                             "detail": json.dumps(detail, ensure_ascii=False, separators=(",", ":"), default=str)})
    _audit(rows, execution_id, recording.transition_audits(
        from_status=from_status, status=status, reason=None, detail=detail, error_message=error_message,
        failed_step=failed_step, audit=None), at)
    rows.exports.append((execution_id, status))


def _audit(rows: _Rows, execution_id: UUID, events: Iterable[tuple[str, dict[str, Any]]],
           at: datetime | None) -> None:
    rows.audits.extend({"execution_id": execution_id, "event_type": event_type, "metadata": metadata, "at": at}
                       for event_type, metadata in events)


def _write(conn: Connection, cfg: PayloadConfig, rows: _Rows, created: list[tuple[BatchItem, ExecutionRecord]]
           ) -> None:
    """Executions, transitions, steps and payloads by COPY; logs, exports and audit events after them."""
    try:
        with conn.connection.cursor() as cur:
            # Executions first: their trigger fills execution_state, and the steps' search outbox
            # trigger reads the workflow id from them.
            _copy(cur, "executions", recording.EXECUTION_COLUMNS, rows.executions)
            _copy(cur, "execution_transitions", TRANSITION_COLUMNS, rows.transitions)
            # No statement may run on conn while a COPY is open: a dictionary look-up during
            # step preparation goes through its own short connection.
            with conn.engine.connect() as side, \
                    cur.copy(f"COPY steps ({', '.join(step_recording.STEP_COLUMNS)}) FROM STDIN") as copy:
                for item, record in created:
                    for step in _prepare_steps(side, cfg, item, record, rows.payloads):
                        copy.write_row([step[c] for c in step_recording.STEP_COLUMNS])
            _copy(cur, "payloads", payloads.PAYLOAD_COLUMNS, rows.payloads)
    except psycopg.Error as exc:
        # The same exceptions as the one-by-one path raises through SQLAlchemy: above all IntegrityError
        # when a concurrent request recorded the same execution id first.
        raise sa.exc.DBAPIError.instance("COPY", None, exc, psycopg.Error) from exc
    if rows.logs:
        conn.execute(recording.INSERT_LOG, rows.logs)
    if tracing.export_enabled():
        for execution_id, status in rows.exports:
            tracing.enqueue_export(conn, execution_id=execution_id, status=status)
    _write_audits(conn, rows.audits)


def _prepare_steps(conn: Connection, cfg: PayloadConfig, item: BatchItem, record: ExecutionRecord,
                   payload_rows: list[dict[str, Any]]) -> Iterable[dict[str, Any]]:
    parent = record.root_span_id
    for attempt in item.steps:
        step = step_recording.prepare_step(conn, cfg, execution_id=record.execution_id,
                                           workflow_id=item.new.workflow_id, attempt=attempt,
                                           parent_span_id=attempt.parent_span_id or parent,
                                           policy=record.policy, masking=record.masking)
        payload_rows.extend(p.row for p in step.payloads)
        parent = step.record.span_id
        yield step.row


def _copy(cur: psycopg.Cursor, table: str, columns: Sequence[str], rows: list[dict[str, Any]]) -> None:
    if not rows:
        return
    with cur.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row([row[c] for c in columns])


def _write_audits(conn: Connection, audits: list[dict[str, Any]]) -> None:
    """All audit events in one statement; if that fails, one savepoint each, so that a failing audit
    write never loses the executions it describes (seed 004) and each failure is logged."""
    if not audits:
        return
    try:
        with conn.begin_nested():
            conn.execute(recording.INSERT_AUDIT, [recording.audit_row(**audit) for audit in audits])
    except SQLAlchemyError:
        log.warning("bulk insert of %d audit events failed; writing them one by one", len(audits))
        for audit in audits:
            recording.record_audit(conn, **audit)
