"""External engines report finished (or running) executions with their steps in one call."""
from __future__ import annotations

from datetime import datetime
from typing import Any, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy import Connection

from services import bulk_recording, recording, step_recording
from services.bulk_recording import BatchItem
from services.errors import InvalidInput
from services.payloads import PayloadConfig
from services.recording import NO_PAYLOAD, ExecutionRecord, NewExecution
from services.step_recording import StepAttempt
from services.tracecontext import parse_traceparent

Status = Literal["pending", "running", "completed", "failed", "timed_out", "cancelled"]


class StepReport(BaseModel):
    """One step attempt as an engine reports it."""

    model_config = ConfigDict(extra="forbid")
    step_name: str = Field(min_length=1, max_length=200)
    step_type: Literal["action", "condition", "transform", "wait"] = "action"
    seq: int | None = Field(default=None, ge=0)
    attempt: int = Field(default=1, ge=1)
    status: Literal["running", "completed", "failed", "timed_out", "skipped", "cancelled"]
    started_at: datetime | None = None
    completed_at: datetime | None = None
    input: Any = None
    output: Any = None
    error_message: str | None = None
    response_status: int | None = None
    external_request_id: str | None = Field(default=None, max_length=500)
    wait_ms: int | None = Field(default=None, ge=0)


class LogLine(BaseModel):
    """One log line of an execution."""

    model_config = ConfigDict(extra="forbid")
    message: str
    level: Literal["debug", "info", "warning", "error"] = "info"
    timestamp: datetime | None = None


class ExecutionReport(BaseModel):
    """An execution as an external engine reports it; timestamps are the engine's own."""

    model_config = ConfigDict(extra="forbid")
    execution_id: UUID | None = None
    workflow_id: str = Field(min_length=1, max_length=200)
    workflow_version: int | None = None
    event_id: UUID | None = None
    trigger_source: Literal["webhook", "schedule", "manual"] = "manual"
    trigger_payload: Any = None
    status: Status
    started_at: datetime | None = None
    completed_at: datetime | None = None
    error_message: str | None = None
    failed_step: str | None = None
    traceparent: str | None = None
    steps: list[StepReport] = Field(default_factory=list)
    logs: list[LogLine] = Field(default_factory=list)
    context: Any = None


def parse_reports(body: Any) -> list[ExecutionReport]:
    """Validate one execution or {"executions": [...]}; every problem is listed."""
    items = body.get("executions") if isinstance(body, dict) and "executions" in body else [body]
    if not isinstance(items, list) or not items:
        raise InvalidInput("body must be an execution object or {\"executions\": [...]} with at least one")
    reports, problems = [], []
    for index, item in enumerate(items):
        try:
            reports.append(ExecutionReport.model_validate(item))
        except ValidationError as exc:
            for err in exc.errors():
                where = ".".join(str(p) for p in err["loc"])
                problems.append(f"executions[{index}].{where}: {err['msg']}")
    if problems:
        raise InvalidInput(f"{len(problems)} problem(s) in the reported executions", problems)
    return reports


def report_executions(conn: Connection, cfg: PayloadConfig, reports: list[ExecutionReport],
                      *, engine: str = "external") -> list[ExecutionRecord]:
    """Record a batch of reported executions in bulk (a few statements per table); re-sent ids change nothing."""
    items = []
    for report in reports:
        failed_step, error = outcome(report)
        items.append(BatchItem(
            new=_new_execution(report, engine), status=report.status,
            steps=[to_attempt(step, index) for index, step in enumerate(report.steps)],
            logs=[(line.message, line.level, line.timestamp) for line in report.logs],
            completed_at=report.completed_at, error_message=error, failed_step=failed_step,
            context=report.context if report.context is not None else NO_PAYLOAD))
    return bulk_recording.record_batch(conn, cfg, items)


def report_execution(conn: Connection, cfg: PayloadConfig, report: ExecutionReport,
                     *, engine: str = "external") -> ExecutionRecord:
    """Record one reported execution with its steps, one statement at a time; a re-sent id changes nothing."""
    record = recording.create_execution(conn, cfg, _new_execution(report, engine))
    if not record.created:
        return record
    if report.status != "pending":
        recording.start_execution(conn, execution_id=record.execution_id, at=report.started_at)
    parent = record.root_span_id
    for index, step in enumerate(report.steps):
        # Spans chain in report order; passing parent and policy spares two look-ups per step.
        parent = step_recording.record_step(conn, cfg, execution_id=record.execution_id, workflow_id=report.workflow_id,
                                            attempt=to_attempt(step, index, parent), policy=record.policy,
                                            masking=record.masking).span_id
    for line in report.logs:
        recording.append_log(conn, execution_id=record.execution_id, message=line.message, level=line.level,
                             at=line.timestamp)
    if report.status in recording.TERMINAL:
        failed_step, error = outcome(report)
        recording.finish_execution(conn, execution_id=record.execution_id, status=report.status,
                                   at=report.completed_at, error_message=error, cfg=cfg,
                                   context=report.context if report.context is not None else NO_PAYLOAD,
                                   failed_step=failed_step)
    return record


def outcome(report: ExecutionReport) -> tuple[str | None, str | None]:
    """The failed step (none for a completed execution) and error message: as reported, else the last failed step's."""
    failed = _first_failed(report.steps)
    failed_step = report.failed_step or (failed.step_name if failed else None)
    error = report.error_message or (failed.error_message if failed else None)
    return (failed_step if report.status != "completed" else None), error


def _new_execution(report: ExecutionReport, engine: str) -> NewExecution:
    return NewExecution(
        workflow_id=report.workflow_id, trigger_source=report.trigger_source,
        trigger_payload=report.trigger_payload, workflow_version=report.workflow_version,
        event_id=report.event_id, execution_id=report.execution_id,
        parent=parse_traceparent(report.traceparent), started_at=report.started_at, engine=engine)


def to_attempt(step: StepReport, index: int, parent_span_id: str | None = None) -> StepAttempt:
    """A reported step as a step attempt; seq defaults to its position in the report."""
    return StepAttempt(parent_span_id=parent_span_id,
        step_name=step.step_name, step_type=step.step_type, seq=step.seq if step.seq is not None else index,
        status=step.status, attempt=step.attempt, started_at=step.started_at, completed_at=step.completed_at,
        input=step.input if step.input is not None else NO_PAYLOAD,
        output=step.output if step.output is not None else NO_PAYLOAD,
        error_message=step.error_message, response_status=step.response_status,
        external_request_id=step.external_request_id, wait_ms=step.wait_ms)


def _first_failed(steps: list[StepReport]) -> StepReport | None:
    return next((s for s in reversed(steps) if s.status in ("failed", "timed_out")), None)
