"""Lineage: an event's executions as a tree of originals, replays and replays of replays."""
from __future__ import annotations

from typing import Any
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy import Connection

from services.errors import NotFound


def lineage(conn: Connection, event_id: UUID) -> dict[str, Any]:
    """The event's processing status and its executions nested by replay_of, oldest first."""
    status = conn.execute(sa.text("SELECT status FROM event_state WHERE event_id = :e"), {"e": event_id}).scalar()
    if status is None:
        raise NotFound(f"event {event_id} not found")
    rows = conn.execute(sa.text(
        "SELECT w.execution_id, w.workflow_id, w.workflow_version, w.status, w.trigger_source, w.started_at, "
        "w.completed_at, w.failed_step, w.replay_of, e.replay_id, w.created_at FROM workflow_executions w "
        "JOIN executions e ON e.execution_id = w.execution_id AND e.created_at = w.created_at "
        "WHERE w.event_id = :e ORDER BY w.created_at, w.execution_id"), {"e": event_id}).mappings().all()
    nodes = {r["execution_id"]: {**dict(r), "replays": []} for r in rows}
    roots = []
    for node in nodes.values():
        parent = nodes.get(node["replay_of"]) if node["replay_of"] else None
        (parent["replays"] if parent else roots).append(node)
    return {"event_id": event_id, "processing_status": status, "executions": roots}
