"""Replay: one event at once, or a selection planned (dry run) and enqueued with who, when and why."""
from __future__ import annotations

import json
import uuid
from collections import defaultdict
from datetime import datetime
from typing import Any
from uuid import UUID

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy import Connection

from services import router
from services.errors import InvalidInput, NotFound
from services.flow import step_key
from services.payloads import PayloadConfig
from services.workflow_models import ActionStep

SAMPLE_SIZE = 10
# "failed" in a selection means every failure outcome, dead letters included (seed 001's status='failed').
STATUS_ALIASES = {"failed": ("failed", "dead_lettered")}

SELECT_SQL = sa.text("""
SELECT st.event_id, st.source_system, st.event_type, st.received_at, st.status
FROM event_state st
WHERE st.status <> 'rejected'
  AND (CAST(:since AS timestamptz) IS NULL OR st.received_at >= :since)
  AND (CAST(:until AS timestamptz) IS NULL OR st.received_at < :until)
  AND (CAST(:source AS text) IS NULL OR st.source_system = :source)
  AND (CAST(:type AS text) IS NULL OR st.event_type = :type)
  AND (CAST(:statuses AS text[]) IS NULL OR st.status = ANY(CAST(:statuses AS text[])))
  AND (CAST(:ids AS uuid[]) IS NULL OR st.event_id = ANY(CAST(:ids AS uuid[])))
  AND (CAST(:workflow AS text) IS NULL OR EXISTS (
        SELECT 1 FROM executions x WHERE x.event_id = st.event_id AND x.workflow_id = :workflow))
  AND (:force OR NOT EXISTS (
        SELECT 1 FROM executions x JOIN execution_state s ON s.execution_id = x.execution_id
        WHERE x.event_id = st.event_id AND x.replay_of IS NOT NULL AND s.status = 'completed'
          AND (CAST(:workflow AS text) IS NULL OR x.workflow_id = :workflow)))
ORDER BY st.received_at, st.event_id
""")


class Selection(BaseModel):
    """Which events a bulk replay takes."""

    model_config = ConfigDict(extra="forbid")
    since: datetime | None = None
    until: datetime | None = None
    source_system: str | None = None
    event_type: str | None = None
    workflow_id: str | None = None
    status: str | list[str] | None = None
    event_ids: list[UUID] | None = Field(default=None, max_length=100_000)

    def statuses(self) -> list[str] | None:
        """The event statuses selected, with aliases expanded."""
        if self.status is None:
            return None
        wanted = [self.status] if isinstance(self.status, str) else self.status
        return sorted({s for w in wanted for s in STATUS_ALIASES.get(w, (w,))})


def parse_selection(raw: Any) -> Selection:
    """A Selection from request JSON; InvalidInput lists every problem."""
    try:
        return Selection.model_validate(raw or {})
    except ValidationError as exc:
        problems = [f"{'.'.join(str(p) for p in e['loc']) or 'selection'}: {e['msg']}" for e in exc.errors()]
        raise InvalidInput("replay selection is invalid", problems) from None


def select_events(conn: Connection, selection: Selection, *, force: bool = False) -> list[dict[str, Any]]:
    """Events the selection takes, oldest first; those fixed by an earlier replay are left out unless forced."""
    rows = conn.execute(SELECT_SQL, {
        "since": selection.since, "until": selection.until, "source": selection.source_system,
        "type": selection.event_type, "statuses": selection.statuses(), "workflow": selection.workflow_id,
        "ids": [str(i) for i in selection.event_ids] if selection.event_ids is not None else None,
        "force": force}).mappings().all()
    return [dict(r) for r in rows]


def plan(conn: Connection, selection: Selection, *, force: bool = False) -> dict[str, Any]:
    """The dry run: count, sample, and per workflow which steps run again (side effects flagged) or are skipped."""
    selected = select_events(conn, selection, force=force)
    return {"dry_run": True, "count": len(selected), "sample": selected[:SAMPLE_SIZE],
            "workflows": _step_plan(conn, selected, selection.workflow_id)}


def enqueue(conn: Connection, selection: Selection, *, requested_by: str, reason: str,
            force: bool = False) -> dict[str, Any]:
    """Record the replay (who, why, what) and queue one item per selected event."""
    _require(requested_by, reason)
    selected = select_events(conn, selection, force=force)
    replay_id = _record(conn, requested_by=requested_by, reason=reason, force=force, total=len(selected),
                        selection=selection.model_dump(mode="json", exclude_none=True))
    conn.execute(sa.text(
        "INSERT INTO replay_items (replay_id, event_id) SELECT :r, unnest(CAST(:ids AS uuid[]))"),
        {"r": replay_id, "ids": [str(e["event_id"]) for e in selected]})
    return {"replay_id": replay_id, "total": len(selected)}


def replay_event(conn: Connection, cfg: PayloadConfig, *, event_id: UUID, requested_by: str,
                 reason: str | None = None, workflow_id: str | None = None) -> dict[str, Any]:
    """Resubmit one stored event to the router as if fresh (the source is never called); returns execution ids.

    The caller hands the ids to the runner after commit.
    """
    _require(requested_by, reason or "single event replay")
    event = router.stored_event(conn, event_id)
    replay_id = _record(conn, requested_by=requested_by, reason=reason or "single event replay", force=True,
                        total=1, selection={"event_ids": [str(event_id)], "workflow_id": workflow_id})
    ids = router.route(conn, cfg, event_id=event_id, source_system=event["source_system"],
                       event_type=event["event_type"], payload=event["payload"], replay_id=replay_id,
                       workflow_id=workflow_id)
    if not ids:
        raise InvalidInput(f"no workflow matches event {event_id} ({event['source_system']}/{event['event_type']})")
    conn.execute(sa.text(
        "INSERT INTO replay_items (replay_id, event_id, state, attempts, claimed_by, claimed_at, finished_at, "
        "execution_ids) VALUES (:r, :e, 'done', 1, :by, now(), now(), CAST(:ids AS uuid[]))"),
        {"r": replay_id, "e": event_id, "by": requested_by, "ids": [str(i) for i in ids]})
    return {"replay_id": replay_id, "event_id": event_id, "executions": ids}


def get_replay(conn: Connection, replay_id: UUID) -> dict[str, Any]:
    """A replay's request and progress: items queued, running, done, failed; its executions by status."""
    row = conn.execute(sa.text(
        "SELECT replay_id, created_at, requested_by, reason, selection, forced, total FROM replays "
        "WHERE replay_id = :r"), {"r": replay_id}).mappings().one_or_none()
    if row is None:
        raise NotFound(f"replay {replay_id} not found")
    counts = dict(conn.execute(sa.text(
        "SELECT state, count(*) FROM replay_items WHERE replay_id = :r GROUP BY state"), {"r": replay_id}).all())
    by_status = dict(conn.execute(sa.text(
        "SELECT s.status, count(*) FROM executions e JOIN execution_state s ON s.execution_id = e.execution_id "
        "WHERE e.replay_id = :r GROUP BY s.status"), {"r": replay_id}).all())
    progress = {state: counts.get(state, 0) for state in ("queued", "running", "done", "failed")}
    finished = progress["done"] + progress["failed"]
    return {**dict(row), "progress": progress, "finished": finished == row["total"],
            "executions": by_status}


def _step_plan(conn: Connection, selected: list[dict[str, Any]], workflow_id: str | None) -> list[dict[str, Any]]:
    per_workflow: dict[str, dict[str, Any]] = {}
    events_for: dict[str, list[UUID]] = defaultdict(list)
    routes: dict[tuple[str, str | None], list[router.Match]] = {}
    for event in selected:
        pair = (event["source_system"], event["event_type"])
        if pair not in routes:
            routes[pair] = router.matching_workflows(conn, source_system=pair[0], event_type=pair[1],
                                                     workflow_id=workflow_id)
        for match in routes[pair]:
            per_workflow.setdefault(match.workflow_id, {"workflow_id": match.workflow_id, "version": match.version,
                                                        "definition": match.definition})
            events_for[match.workflow_id].append(event["event_id"])
    result = []
    for wf_id, info in sorted(per_workflow.items()):
        ids = events_for[wf_id]
        plan_steps = []
        for step in info["definition"].steps:
            keys = [step_key(e, wf_id, step.name) for e in ids]
            done = conn.execute(sa.text(
                "SELECT count(*) FROM step_success_keys WHERE idempotency_key = ANY(CAST(:k AS text[]))"),
                {"k": keys}).scalar_one()
            plan_steps.append({"name": step.name, "type": step.type, "side_effect": isinstance(step, ActionStep),
                               "rerun": len(ids) - done, "skipped": done})
        result.append({"workflow_id": wf_id, "version": info["version"], "events": len(ids), "steps": plan_steps})
    return result


def _record(conn: Connection, *, requested_by: str, reason: str, force: bool, total: int,
            selection: dict[str, Any]) -> UUID:
    replay_id = uuid.uuid4()
    conn.execute(sa.text(
        "INSERT INTO replays (replay_id, requested_by, reason, selection, forced, total) "
        "VALUES (:r, :by, :why, CAST(:sel AS jsonb), :force, :total)"),
        {"r": replay_id, "by": requested_by, "why": reason, "sel": json.dumps(selection, default=str),
         "force": force, "total": total})
    return replay_id


def _require(requested_by: str | None, reason: str | None) -> None:
    problems = []
    if not (requested_by or "").strip():
        problems.append("requested_by: who asks for the replay is required")
    if not (reason or "").strip():
        problems.append("reason: a reason is required for a bulk replay")
    if problems:
        raise InvalidInput("replay request is incomplete", problems)
