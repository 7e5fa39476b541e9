"""The router: accepted events to every workflow whose event trigger matches; due cron schedules to runs."""
from __future__ import annotations

import fnmatch
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy import Connection

from services import events, recording, tracing, workflows
from services.db import Database
from services.errors import InvalidInput, NotFound
from services.payloads import PayloadConfig
from services.recording import NewExecution
from services.workflow_models import Definition, EventTrigger, ScheduleTrigger

REPLAY_NAMESPACE = uuid.UUID("6f1c2f0e-52a4-4d38-9a53-2b7c8f0d9e11")
SCHEDULE_WINDOW = timedelta(minutes=2)


@dataclass(frozen=True)
class Match:
    """A workflow version an event is routed to."""

    workflow_id: str
    version: int
    definition: Definition


def matches(definition: Definition, *, source_system: str, event_type: str | None) -> bool:
    """True when the definition's event trigger patterns match the source and event type (fnmatch)."""
    trigger = definition.trigger
    if not isinstance(trigger, EventTrigger):
        return False
    return (fnmatch.fnmatchcase(source_system, trigger.source)
            and fnmatch.fnmatchcase(event_type or "", trigger.event_type))


def matching_workflows(conn: Connection, *, source_system: str, event_type: str | None,
                       workflow_id: str | None = None, everything: bool = False) -> list[Match]:
    """Latest versions of the event-triggered workflows that match, optionally only one workflow."""
    found = []
    for row in workflows.list_workflows(conn, trigger_type="event"):
        if workflow_id is not None and row["workflow_id"] != workflow_id:
            continue
        definition = workflows.parse_stored(row)
        if everything or matches(definition, source_system=source_system, event_type=event_type):
            found.append(Match(row["workflow_id"], row["version"], definition))
    return found


TRIGGER_CACHE_SECONDS = 2.0
_trigger_cache: dict[int, tuple[float, int, list[Match]]] = {}


def may_route(database: Database, *, source_system: str, event_type: str | None) -> bool:
    """Whether any event-triggered workflow matches, from a short-lived per-process cache of triggers.

    Most webhooks match nothing; this spares them a transaction. Saving a workflow in this process
    refreshes the cache at once; another process's change is seen within TRIGGER_CACHE_SECONDS.
    """
    now = time.monotonic()
    cached = _trigger_cache.get(id(database))
    if cached is None or now - cached[0] > TRIGGER_CACHE_SECONDS or cached[1] != workflows.generation():
        with database.reader() as conn:
            found = matching_workflows(conn, source_system="*", event_type=None, everything=True)
        cached = (now, workflows.generation(), found)
        _trigger_cache[id(database)] = cached
    return any(matches(m.definition, source_system=source_system, event_type=event_type) for m in cached[2])


def route(conn: Connection, cfg: PayloadConfig, *, event_id: UUID, source_system: str, event_type: str | None,
          payload: Any, replay_id: UUID | None = None, workflow_id: str | None = None) -> list[UUID]:
    """Create one webhook execution per matching workflow and mark the event routed; returns execution ids.

    With replay_id the ids are derived from (replay, event, workflow), so routing the same replay item twice
    (a worker that died after routing) finds the executions it already made instead of making new ones.
    """
    ids = []
    for match in matching_workflows(conn, source_system=source_system, event_type=event_type,
                                    workflow_id=workflow_id):
        execution_id = uuid.uuid5(REPLAY_NAMESPACE, f"{replay_id}/{event_id}/{match.workflow_id}") \
            if replay_id else None
        replay_of = _latest_execution(conn, event_id, match.workflow_id, execution_id) if replay_id else None
        record = recording.create_execution(conn, cfg, NewExecution(
            workflow_id=match.workflow_id, workflow_version=match.version, trigger_source="webhook",
            trigger_payload=payload, event_id=event_id, execution_id=execution_id, replay_of=replay_of,
            replay_id=replay_id, parent=tracing.parent_for_event(conn, event_id=event_id)))
        ids.append(record.execution_id)
    if ids:
        events.append_status(conn, event_id=event_id, status="routed",
                             detail={"executions": [str(i) for i in ids], "replay_id": replay_id})
    return ids


def stored_event(conn: Connection, event_id: UUID) -> dict[str, Any]:
    """What a replay resubmits: the stored JSON payload, source and type (never the source system)."""
    row = conn.execute(sa.text(
        "SELECT event_id, source_system, event_type, payload, rejected_reason FROM events WHERE event_id = :e"),
        {"e": event_id}).mappings().one_or_none()
    if row is None:
        raise NotFound(f"event {event_id} not found")
    if row["payload"] is None:
        raise InvalidInput(f"event {event_id} has no JSON payload to replay ({row['rejected_reason']})")
    return dict(row)


def due_schedules(conn: Connection, *, now: datetime) -> list[tuple[str, datetime]]:
    """(workflow id, slot) for each schedule-triggered workflow whose latest cron slot is due and unclaimed.

    A slot is claimed by inserting job_runs (job, slot), unique, so replicas never start a slot twice.
    """
    from apscheduler.triggers.cron import CronTrigger

    due = []
    for row in workflows.list_workflows(conn, trigger_type="schedule"):
        trigger = workflows.parse_stored(row).trigger
        assert isinstance(trigger, ScheduleTrigger)
        cron = CronTrigger.from_crontab(trigger.cron, timezone="UTC")
        slot, fire = None, cron.get_next_fire_time(None, now - SCHEDULE_WINDOW)
        while fire is not None and fire <= now:
            slot, fire = fire, cron.get_next_fire_time(fire, fire + timedelta(microseconds=1))
        if slot is None:
            continue
        claimed = conn.execute(sa.text(
            "INSERT INTO job_runs (job, slot, status) VALUES (:j, :s, 'started') ON CONFLICT DO NOTHING RETURNING id"),
            {"j": f"schedule:{row['workflow_id']}", "s": slot}).scalar()
        if claimed:
            due.append((row["workflow_id"], slot))
    return due


def _latest_execution(conn: Connection, event_id: UUID, workflow_id: str, not_id: UUID | None) -> UUID | None:
    return conn.execute(sa.text(
        "SELECT execution_id FROM executions WHERE event_id = :e AND workflow_id = :w "
        "AND execution_id IS DISTINCT FROM :not_id ORDER BY created_at DESC LIMIT 1"),
        {"e": event_id, "w": workflow_id, "not_id": not_id}).scalar()


def run_due_schedules(database: Database, runner: Any, *, now: datetime) -> list[UUID]:
    """Start one schedule-triggered execution per due, unclaimed slot; returns the execution ids."""
    with database.writer() as conn:
        due = due_schedules(conn, now=now)
    return [runner.start(workflow_id=workflow_id, payload={"scheduled_for": slot.isoformat()},
                         trigger_source="schedule") for workflow_id, slot in due]
