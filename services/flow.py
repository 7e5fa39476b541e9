"""One execution's step loop: idempotent steps, retries with backoff, timeouts, waits, event settlement."""
from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy import Connection

from services import events, payloads, recording, step_recording, steps, workflows
from services.db import Database
from services.errors import Conflict
from services.payloads import PayloadConfig
from services.recording import NO_PAYLOAD
from services.step_recording import StepAttempt
from services.workflow_models import ActionStep, ConditionStep, Definition, TransformStep, WaitStep

log = logging.getLogger(__name__)
TERMINAL = recording.TERMINAL


@dataclass(frozen=True)
class Resume:
    """Where a deferred execution continues: the wait step it sat in and the context so far."""

    seq: int
    context: dict[str, Any]
    waited_since: datetime


@dataclass
class FlowContext:
    """What the step loop needs from the runner that owns it."""

    database: Database
    payloads: PayloadConfig
    tools: steps.Toolbox
    clock: Callable[[], datetime]
    is_cancelled: Callable[[UUID], bool]
    pause: Callable[[UUID, float], None]
    defer: Callable[[UUID, datetime, Resume], None]
    trigger_payloads: dict[UUID, Any] = field(default_factory=dict)


def step_key(event_id: UUID | None, workflow_id: str, step_name: str) -> str | None:
    """The idempotency key of a step: event, workflow and step name, deliberately without the version."""
    return f"{event_id}/{workflow_id}/{step_name}" if event_id else None


def run_execution(fc: FlowContext, execution_id: UUID, resume: Resume | None = None) -> str | None:
    """Run (or continue) one execution to its end or its next wait; returns the final status if it ended."""
    db = fc.database
    with db.writer() as conn:
        ex = conn.execute(sa.text(
            "SELECT e.workflow_id, e.workflow_version, e.event_id, e.trigger_payload, s.status FROM executions e "
            "JOIN execution_state s ON s.execution_id = e.execution_id WHERE e.execution_id = :e"),
            {"e": execution_id}).one()
        if ex.status in TERMINAL:
            return ex.status
        if ex.status == "pending":
            recording.start_execution(conn, execution_id=execution_id, at=fc.clock())
        definition = workflows.definition_of(conn, ex.workflow_id, ex.workflow_version)
        context = resume.context if resume else _initial_context(conn, fc, execution_id, ex)
    first = resume.seq if resume else 0
    for seq in range(first, len(definition.steps)):
        step = definition.steps[seq]
        key = step_key(ex.event_id, ex.workflow_id, step.name)
        if fc.is_cancelled(execution_id) or _ended(db, execution_id):
            return None
        if isinstance(step, WaitStep):
            if _reuse(fc, execution_id, ex.workflow_id, seq, step, key, context):
                continue
            if resume is None or resume.seq != seq:
                _start_wait(fc, execution_id, seq, step, context)
                return None
            _finish_wait(fc, execution_id, ex.workflow_id, seq, step, key, resume)
            context["steps"][step.name] = {"waited_seconds": step.seconds}
            continue
        with _key_lock(db, key if isinstance(step, ActionStep) else None):
            if _reuse(fc, execution_id, ex.workflow_id, seq, step, key, context):
                continue
            outcome, attempts = _attempts(fc, execution_id, ex.workflow_id, seq, step, key, context)
        if outcome is None:
            return None
        if outcome.status != "completed":
            reason = "step_timeout" if outcome.status == "timed_out" else (
                "retries_exhausted" if outcome.retryable else "step_error")
            return _finish(fc, execution_id, ex.event_id, "failed" if outcome.status == "failed" else "timed_out",
                           error=outcome.error, failed_step=step.name, reason=reason, attempts=attempts,
                           context=context)
        _apply(context, step, outcome.output)
        if isinstance(step, ConditionStep) and not outcome.output["result"]:
            _skip_rest(fc, execution_id, ex.workflow_id, definition, seq)
            return _finish(fc, execution_id, ex.event_id, "completed", reason="condition_false", context=context)
    return _finish(fc, execution_id, ex.event_id, "completed", context=context)


def pending_steps(conn: Connection, execution_id: UUID, definition: Definition) -> int:
    """How many steps of the definition have not finished (completed or skipped) in this execution."""
    done = conn.execute(sa.text(
        "SELECT count(DISTINCT seq) FROM steps WHERE execution_id = :e AND status IN ('completed', 'skipped')"),
        {"e": execution_id}).scalar_one()
    return max(0, len(definition.steps) - done)


def _initial_context(conn: Connection, fc: FlowContext, execution_id: UUID, ex: Any) -> dict[str, Any]:
    payload = fc.trigger_payloads.pop(execution_id, NO_PAYLOAD)
    if payload is NO_PAYLOAD and ex.event_id is not None:
        # The event's own body as received (its JSONB copy is masked): masking applies to what is
        # recorded, not to what steps send downstream.
        raw = conn.execute(sa.text("SELECT raw_body FROM events WHERE event_id = :e LIMIT 1"),
                           {"e": ex.event_id}).scalar()
        try:
            payload = json.loads(bytes(raw)) if raw is not None else NO_PAYLOAD
        except ValueError:
            payload = NO_PAYLOAD
    if payload is NO_PAYLOAD:
        payload = ex.trigger_payload
    return {"trigger": payload, "event": {"id": str(ex.event_id) if ex.event_id else None},
            "execution": {"id": str(execution_id), "workflow_id": ex.workflow_id}, "steps": {}}


def _reuse(fc: FlowContext, execution_id: UUID, workflow_id: str, seq: int, step: Any, key: str | None,
           context: dict[str, Any]) -> bool:
    """Skip a step whose key already succeeded, reusing its recorded output; True when skipped."""
    if key is None:
        return False
    with fc.database.writer() as conn:
        done = conn.execute(sa.text(
            "SELECT execution_id, output_payload_id FROM step_success_keys WHERE idempotency_key = :k"),
            {"k": key}).one_or_none()
        if done is None:
            return False
        output = payloads.load(conn, fc.payloads, done.output_payload_id) if done.output_payload_id else None
        if done.execution_id != execution_id:
            now = fc.clock()
            step_recording.record_step(conn, fc.payloads, execution_id=execution_id, workflow_id=workflow_id,
                                       attempt=StepAttempt(step_name=step.name, step_type=step.type, seq=seq,
                                                           status="skipped", started_at=now, completed_at=now,
                                                           output=output, idempotency_key=key,
                                                           reused_from_execution=done.execution_id))
    _apply(context, step, output)
    return True


def _attempts(fc: FlowContext, execution_id: UUID, workflow_id: str, seq: int, step: Any, key: str | None,
              context: dict[str, Any]) -> tuple[steps.Outcome | None, int]:
    """Run attempts until success, timeout, a non-retryable error or max_attempts; None when cancelled."""
    outcome: steps.Outcome | None = None
    attempt = 0
    for attempt in range(1, step.max_attempts + 1):
        started = fc.clock()
        outcome = _execute(fc, step, context, key)
        completed = fc.clock()
        with fc.database.writer() as conn:
            step_recording.record_step(conn, fc.payloads, execution_id=execution_id, workflow_id=workflow_id,
                                       attempt=StepAttempt(
                                           step_name=step.name, step_type=step.type, seq=seq, status=outcome.status,
                                           attempt=attempt, started_at=started, completed_at=completed,
                                           input=outcome.input, output=outcome.output, error_message=outcome.error,
                                           response_status=outcome.response_status,
                                           external_request_id=outcome.external_request_id, idempotency_key=key))
        if outcome.status != "failed" or not outcome.retryable or attempt == step.max_attempts:
            break
        fc.pause(execution_id, step.backoff_seconds * step.backoff_multiplier ** (attempt - 1))
        if fc.is_cancelled(execution_id) or _ended(fc.database, execution_id):
            return None, attempt
    return outcome, attempt


def _execute(fc: FlowContext, step: Any, context: dict[str, Any], key: str | None) -> steps.Outcome:
    try:
        if isinstance(step, ActionStep):
            return steps.run_action(step, context, fc.tools, idempotency_key=key)
        if isinstance(step, ConditionStep):
            return steps.evaluate_condition(step, context)
        if isinstance(step, TransformStep):
            return steps.apply_transform(step, context)
    except Exception as exc:  # an expression error is this step's failure, not the runner's
        return steps.Outcome("failed", error=f"{type(exc).__name__}: {exc}", retryable=False)
    return steps.Outcome("failed", error=f"unknown step type {step.type}", retryable=False)


def _apply(context: dict[str, Any], step: Any, output: Any) -> None:
    context["steps"][step.name] = output
    if isinstance(step, TransformStep) and isinstance(output, dict):
        context.update(output)


def _start_wait(fc: FlowContext, execution_id: UUID, seq: int, step: WaitStep, context: dict[str, Any]) -> None:
    now = fc.clock()
    resume_at = now + timedelta(seconds=step.seconds)
    with fc.database.writer() as conn:
        recording.record_audit(conn, execution_id=execution_id, event_type="WAITING", at=now,
                               metadata={"step": step.name, "seconds": step.seconds,
                                         "resume_at": resume_at.isoformat()})
    fc.defer(execution_id, resume_at, Resume(seq, context, now))


def _finish_wait(fc: FlowContext, execution_id: UUID, workflow_id: str, seq: int, step: WaitStep,
                 key: str | None, resume: Resume) -> None:
    now = fc.clock()
    waited = max(0, int((now - resume.waited_since).total_seconds() * 1000))
    with fc.database.writer() as conn:
        step_recording.record_step(conn, fc.payloads, execution_id=execution_id, workflow_id=workflow_id,
                                   attempt=StepAttempt(step_name=step.name, step_type="wait", seq=seq,
                                                       status="completed", started_at=resume.waited_since,
                                                       completed_at=now, wait_ms=waited,
                                                       output={"waited_seconds": step.seconds}, idempotency_key=key))


def _skip_rest(fc: FlowContext, execution_id: UUID, workflow_id: str, definition: Definition, seq: int) -> None:
    now = fc.clock()
    with fc.database.writer() as conn:
        for later, step in enumerate(definition.steps[seq + 1:], start=seq + 1):
            step_recording.record_step(conn, fc.payloads, execution_id=execution_id, workflow_id=workflow_id,
                                       attempt=StepAttempt(step_name=step.name, step_type=step.type, seq=later,
                                                           status="skipped", started_at=now, completed_at=now,
                                                           error_message="condition was false"))
        recording.append_log(conn, execution_id=execution_id, at=now,
                             message=f"condition {definition.steps[seq].name} was false; "
                                     f"{len(definition.steps) - seq - 1} step(s) skipped")


def _finish(fc: FlowContext, execution_id: UUID, event_id: UUID | None, status: str, *, error: str | None = None,
            failed_step: str | None = None, reason: str | None = None, attempts: int | None = None,
            context: dict[str, Any] | None = None) -> str | None:
    try:
        with fc.database.writer() as conn:
            # The final context as the runner saw it is stored once, masked and under the payload policy.
            recording.finish_execution(conn, execution_id=execution_id, status=status, at=fc.clock(),
                                       error_message=error, failed_step=failed_step, reason=reason,
                                       audit={"attempts": attempts} if attempts else None,
                                       context=context if context is not None else recording.NO_PAYLOAD,
                                       cfg=fc.payloads)
            if event_id is not None:
                settle_event(conn, event_id)
    except Conflict:
        return None  # cancelled (or finished elsewhere) while the last step ran
    return status


# Why a failed execution sends its event to the dead-letter queue (to be replayed): its retries ran
# out, or its process stopped mid-run (services/recovery.py).
DEAD_LETTER_REASONS = ("retries_exhausted", "interrupted")


def settle_event(conn: Connection, event_id: UUID) -> str | None:
    """Append the event's processing status once the latest execution of every workflow has ended."""
    # Serialise per event so that two executions ending together cannot both see the other unfinished.
    conn.execute(sa.text("SELECT pg_advisory_xact_lock(hashtextextended(:k, 0))"), {"k": f"event:{event_id}"})
    rows = conn.execute(sa.text(
        "SELECT DISTINCT ON (e.workflow_id) e.workflow_id, s.status, "
        "(SELECT t.reason FROM execution_transitions t WHERE t.execution_id = e.execution_id "
        " AND t.status IN ('completed', 'failed', 'timed_out', 'cancelled')) AS reason "
        "FROM executions e JOIN execution_state s ON s.execution_id = e.execution_id "
        "WHERE e.event_id = :ev ORDER BY e.workflow_id, e.created_at DESC"), {"ev": event_id}).all()
    if not rows or any(r.status not in TERMINAL for r in rows):
        return None
    if all(r.status == "completed" for r in rows):
        status = "processed"
    elif any(r.status == "failed" and r.reason in DEAD_LETTER_REASONS for r in rows):
        status = "dead_lettered"
    else:
        status = "failed"
    current = conn.execute(sa.text("SELECT status FROM event_state WHERE event_id = :e"), {"e": event_id}).scalar()
    if current != status:
        events.append_status(conn, event_id=event_id, status=status,
                             detail={"workflows": {r.workflow_id: r.status for r in rows}})
    return status


@contextlib.contextmanager
def _key_lock(db: Database, key: str | None) -> Iterator[None]:
    """Hold a lock on a step key while it runs, so two executions of one event never both call downstream."""
    if key is None:
        yield
        return
    with db.writer() as conn:
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(hashtextextended(:k, 0))"), {"k": f"step:{key}"})
        yield


def _ended(db: Database, execution_id: UUID) -> bool:
    with db.reader() as conn:
        status = conn.execute(sa.text("SELECT status FROM execution_state WHERE execution_id = :e"),
                              {"e": execution_id}).scalar()
    return status in TERMINAL
