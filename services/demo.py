"""Fills a ledger with realistic demo history through the public ingestion and recording services."""
from __future__ import annotations

import contextlib
import json
import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from sqlalchemy import Connection

from services import backdating, demo_plan, events, fake_data, flow, recording, step_recording, workflows
from services.demo_plan import WORKFLOWS, PlannedRun, WorkflowSpec
from services.payloads import PayloadConfig
from services.recording import NewExecution
from services.step_recording import StepAttempt

# The runs of the last day get a real webhook event; older history looks like runs reported by an external
# engine. Each event is received just before its run starts when that is at or after backdating.floor() (a
# fresh ledger); behind a rollup watermark or a seal it is received now, when the demo runs.
EVENT_WINDOW = timedelta(hours=24)
SENDER_LEAD = timedelta(milliseconds=150)  # how long before its run an event arrives
BATCH = 25
MAX_DEPTH = 64


@dataclass(frozen=True)
class DemoResult:
    """What the demo recorded."""

    executions: int
    failed: int
    events: int
    dead_lettered: int
    spike_hour: datetime
    workflows: tuple[str, ...]


def fill(open_writer: Callable[[], contextlib.AbstractContextManager[Connection]], cfg: PayloadConfig, *,
         executions: int = 3000, days: int = 30, seed: int = 7, now: datetime | None = None,
         on_progress: Callable[[int], None] | None = None) -> DemoResult:
    """Record `executions` runs over `days` days ending at `now`, in batches of short writer transactions."""
    now = now or datetime.now(UTC)
    rng = random.Random(seed)
    runs, spike_hour = demo_plan.plan(rng, executions=executions, days=days, now=now)
    with open_writer() as conn:
        for workflow in (*WORKFLOWS, demo_plan.BACKFILL):
            register_workflow(conn, workflow)
    counts = {"failed": 0, "events": 0, "dead": 0}
    for start in range(0, len(runs), BATCH):
        batch = runs[start:start + BATCH]
        with open_writer() as conn:
            earliest = backdating.floor(conn)
            for planned in batch:
                record_run(conn, cfg, rng, planned, now=now, counts=counts, earliest=earliest)
        if on_progress:
            on_progress(len(batch))
    workflows = tuple(sorted({r.workflow.workflow_id for r in runs}))
    return DemoResult(len(runs), counts["failed"], counts["events"], counts["dead"], spike_hour, workflows)


def register_workflow(conn: Connection, workflow: WorkflowSpec) -> int:
    """Save the demo workflow's definition through the workflow service (unchanged ones keep their version)."""
    trigger: dict[str, Any] = {"type": "manual"}
    if workflow.trigger_source == "webhook":
        trigger = {"type": "event", "source": workflow.source_system, "event_type": workflow.event_type}
    elif workflow.trigger_source == "schedule":
        trigger = {"type": "schedule", "cron": "0 2 * * *"}
    steps = [_step_definition(spec) for spec in workflow.steps] or [
        _step_definition(demo_plan.StepSpec("sync_contacts_batch"))]
    definition = workflows.parse({
        "id": workflow.workflow_id, "name": workflow.workflow_id.replace("-", " ").capitalize(),
        "description": workflow.description, "trigger": trigger, "steps": steps,
        "retention_days": workflow.retention_days, "retain_on_failure": workflow.retain_on_failure,
        "legal_hold": workflow.legal_hold})
    return workflows.save_workflow(conn, definition=definition, created_by="flowledger demo",
                                   change_note="demo workflow")


def _step_definition(spec: demo_plan.StepSpec) -> dict[str, Any]:
    """A valid step definition for a demo step (downstream URLs are the demo's example.com systems)."""
    if spec.type == "wait":
        return {"name": spec.name, "type": "wait", "seconds": spec.median_ms / 1000}
    if spec.type == "transform":
        return {"name": spec.name, "type": "transform", "fields": {"checked": "event"}}
    host = next((h for kind, h in fake_data.DOWNSTREAM.items() if kind in spec.name), "api.example.com")
    return {"name": spec.name, "type": "action", "url": f"https://{host}/v1/{spec.name}", "max_attempts":
            demo_plan.MAX_ATTEMPTS, "backoff_seconds": 2, "timeout_seconds": 30}


def record_run(conn: Connection, cfg: PayloadConfig, rng: random.Random, planned: PlannedRun, *,
               now: datetime, counts: dict[str, int], earliest: datetime | None = None) -> UUID:
    """Record one planned run: its event (when recent), execution, step attempts, logs and outcome.

    earliest is backdating.floor() of conn's transaction: the event is received just before the run
    when that is not earlier, else at the transaction's time."""
    workflow = planned.workflow
    payload = demo_plan.trigger_payload(rng, workflow, planned.started_at)
    event_id, received = None, None
    if workflow.source_system and now - planned.started_at <= EVENT_WINDOW:
        if earliest is not None and planned.started_at - SENDER_LEAD >= earliest:
            received = planned.started_at - SENDER_LEAD
        event_id = _receive(conn, workflow, payload, received)
        counts["events"] += 1
    record = recording.create_execution(conn, cfg, NewExecution(
        workflow_id=workflow.workflow_id, trigger_source=workflow.trigger_source, trigger_payload=payload,
        workflow_version=1, event_id=event_id, started_at=planned.started_at, engine="demo"))
    execution_id = record.execution_id
    recording.start_execution(conn, execution_id=execution_id, at=planned.started_at)
    recording.append_log(conn, execution_id=execution_id, at=planned.started_at,
                         message=f"{workflow.workflow_id} started by {workflow.trigger_source}")
    small = len(planned.steps) > 50
    for step in planned.steps:
        _record_step(conn, cfg, rng, execution_id, workflow.workflow_id, step, with_payloads=not small,
                     key=flow.step_key(event_id, workflow.workflow_id, step.spec.name))
    recording.finish_execution(conn, execution_id=execution_id, status=planned.status, at=planned.completed_at,
                               error_message=planned.error, failed_step=planned.failed_step)
    if planned.status != "completed":
        counts["failed"] += 1
    if event_id is not None:
        settled = None if received is None else min(planned.completed_at, now)
        _settle_event(conn, event_id, planned, execution_id, counts, settled)
    return execution_id


def _receive(conn: Connection, workflow: WorkflowSpec, payload: dict[str, Any], received: datetime | None) -> UUID:
    """Ingest the webhook exactly as the ingestion API would (received then, or now), then mark it routed."""
    body = json.dumps(payload, ensure_ascii=False).encode()
    result = events.ingest(conn, events.IncomingEvent(
        source_system=workflow.source_system or "demo", body=body, content_type="application/json",
        event_type=workflow.event_type, headers={"Content-Type": "application/json",
                                                 "X-Event-Type": workflow.event_type or ""}, received_at=received),
        max_depth=MAX_DEPTH)
    events.append_status(conn, event_id=result.event_id, status="routed",
                         detail={"workflows": [workflow.workflow_id]}, at=received)
    return result.event_id


def _settle_event(conn: Connection, event_id: UUID, planned: PlannedRun, execution_id: UUID,
                  counts: dict[str, int], at: datetime | None) -> None:
    """Processed, or dead-lettered once the failing step exhausted its attempts (at the run's end, or now)."""
    if planned.status == "completed":
        events.append_status(conn, event_id=event_id, status="processed",
                             detail={"execution_id": str(execution_id)}, at=at)
        return
    counts["dead"] += 1
    events.append_status(conn, event_id=event_id, status="dead_lettered", at=at, detail={
        "execution_id": str(execution_id), "workflow_id": planned.workflow.workflow_id,
        "failed_step": planned.failed_step, "error": planned.error, "attempts": demo_plan.MAX_ATTEMPTS})


def _record_step(conn: Connection, cfg: PayloadConfig, rng: random.Random, execution_id: UUID, workflow_id: str,
                 step: demo_plan.PlannedStep, *, with_payloads: bool, key: str | None) -> None:
    """One attempt with realistic input/output, a downstream request id and a log line on errors."""
    ran = step.status != "skipped"
    payload = with_payloads and ran and step.spec.type != "wait"
    size = rng.randint(400, 1600)
    failed = step.status in ("failed", "timed_out")
    attempt = StepAttempt(
        step_name=step.spec.name, step_type=step.spec.type, seq=step.seq, status=step.status, attempt=step.attempt,
        started_at=step.started_at, completed_at=step.completed_at, wait_ms=step.wait_ms,
        input=fake_data.step_payload(rng, step_name=step.spec.name, size_hint=size) if payload
        else recording.NO_PAYLOAD,
        output=fake_data.step_payload(rng, step_name=step.spec.name, size_hint=size) if payload and not failed
        else recording.NO_PAYLOAD,
        error_message=step.error, response_status=_response_status(step) if step.spec.type == "action" else None,
        external_request_id=f"req_{rng.getrandbits(64):016x}" if ran and step.spec.type == "action" else None,
        idempotency_key=key)
    record = step_recording.record_step(conn, cfg, execution_id=execution_id, workflow_id=workflow_id, attempt=attempt)
    if failed:
        recording.append_log(conn, execution_id=execution_id, step_id=record.step_id, level="error",
                             at=step.completed_at, message=f"{step.spec.name} attempt #{step.attempt}: {step.error}")


def _response_status(step: demo_plan.PlannedStep) -> int | None:
    """The HTTP status the downstream answered, read from the error text when there is one."""
    if step.status == "completed":
        return 200
    if step.status != "failed" or not step.error:
        return None
    for token in step.error.replace(":", " ").split():
        if token.isdigit() and len(token) == 3:
            return int(token)
    return 500
