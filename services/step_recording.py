"""Step attempts: validated, their payloads masked and compressed, appended to the ledger."""
from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy import Connection

from services import payloads, text_extraction
from services.errors import InvalidInput
from services.payload_policy import PayloadPolicy
from services.payloads import PayloadConfig
from services.recording import NO_PAYLOAD, execution_rules
from services.tracecontext import new_span_id

STEP_TYPES = ("action", "condition", "transform", "wait")
STEP_STATUSES = ("running", "completed", "failed", "timed_out", "skipped", "cancelled")


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


STEP_COLUMNS = ("step_id", "execution_id", "seq", "step_name", "step_type", "attempt", "status", "started_at",
                "completed_at", "duration_ms", "wait_ms", "input_payload_id", "output_payload_id", "error_message",
                "response_status", "external_request_id", "span_id", "parent_span_id", "idempotency_key",
                "reused_from_execution", "search_text")
INSERT_STEP = sa.text(f"INSERT INTO steps ({', '.join(STEP_COLUMNS)}) "
                      f"VALUES ({', '.join(':' + c for c in STEP_COLUMNS)})")


@dataclass(frozen=True)
class PreparedStep:
    """A step attempt's steps row (keyed by column) and its masked, compressed payload rows, not yet inserted."""

    row: dict[str, Any]
    payloads: tuple[payloads.PreparedPayload, ...]
    record: StepRecord


def record_step(conn: Connection, cfg: PayloadConfig, *, execution_id: UUID, workflow_id: str,
                attempt: StepAttempt, policy: PayloadPolicy | None = None,
                masking: tuple[tuple[str, ...], tuple[str, ...]] | None = None) -> StepRecord:
    """Append one step attempt with its masked, compressed input and output.

    policy and masking are the execution's payload rules when the caller already knows them (saves a query).
    """
    _validate_step(attempt)
    parent = attempt.parent_span_id or _predecessor_span(conn, execution_id)
    if policy is None or masking is None:
        policy, masking = execution_rules(conn, execution_id)
    step = prepare_step(conn, cfg, execution_id=execution_id, workflow_id=workflow_id, attempt=attempt,
                        parent_span_id=parent, policy=policy, masking=masking)
    for prepared in step.payloads:
        conn.execute(payloads.INSERT_PAYLOAD, prepared.row)
    conn.execute(INSERT_STEP, step.row)
    if attempt.idempotency_key and attempt.status == "completed" and attempt.reused_from_execution is None:
        conn.execute(sa.text(
            "INSERT INTO step_success_keys (idempotency_key, step_id, execution_id, output_payload_id) "
            "VALUES (:k, :s, :e, :o) ON CONFLICT (idempotency_key) DO NOTHING"),
            {"k": attempt.idempotency_key, "s": step.record.step_id, "e": execution_id,
             "o": step.record.output_payload_id})
    return step.record


def prepare_step(conn: Connection, cfg: PayloadConfig, *, execution_id: UUID, workflow_id: str,
                 attempt: StepAttempt, parent_span_id: str | None, policy: PayloadPolicy,
                 masking: tuple[tuple[str, ...], tuple[str, ...]]) -> PreparedStep:
    """Validate a step attempt and build its rows; conn is only read (workflow dictionaries), never written."""
    _validate_step(attempt)
    step_id = attempt.step_id or uuid.uuid4()
    span_id = attempt.span_id or new_span_id()
    texts: list[str] = []
    prepared: list[payloads.PreparedPayload] = []
    ids: dict[str, UUID | None] = {"input": None, "output": None}
    for kind, value in (("input", attempt.input), ("output", attempt.output)):
        if value is not NO_PAYLOAD:
            payload = payloads.prepare(conn, cfg, execution_id=execution_id, kind=kind, value=value,
                                       workflow_id=workflow_id, step_id=step_id, policy=policy, masking=masking)
            prepared.append(payload)
            ids[kind] = payload.ref.payload_id
            texts.append(payload.ref.search_text)
    if attempt.error_message:
        texts.append(attempt.error_message)
    row = {"step_id": step_id, "execution_id": execution_id, "seq": attempt.seq, "step_name": attempt.step_name,
           "step_type": attempt.step_type, "attempt": attempt.attempt, "status": attempt.status,
           "started_at": attempt.started_at, "completed_at": attempt.completed_at,
           "duration_ms": _duration_ms(attempt.started_at, attempt.completed_at), "wait_ms": attempt.wait_ms,
           "input_payload_id": ids["input"], "output_payload_id": ids["output"],
           "error_message": attempt.error_message, "response_status": attempt.response_status,
           "external_request_id": attempt.external_request_id, "span_id": span_id,
           "parent_span_id": parent_span_id, "idempotency_key": attempt.idempotency_key,
           "reused_from_execution": attempt.reused_from_execution, "search_text": text_extraction.step_text(texts)}
    return PreparedStep(row, tuple(prepared),
                        StepRecord(step_id, span_id, parent_span_id, ids["input"], ids["output"]))


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


def _duration_ms(start: datetime | None, end: datetime | None) -> int | None:
    if start is None or end is None:
        return None
    return max(0, int((end - start).total_seconds() * 1000))
