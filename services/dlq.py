"""The dead-letter queue: events whose execution exhausted its retries, with the failure that put them there."""
from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection

from services import events


def list_dead_lettered(conn: Connection, *, source_system: str | None = None, event_type: str | None = None,
                       since: datetime | None = None, until: datetime | None = None, cursor: str | None = None,
                       limit: int = 50) -> dict[str, Any]:
    """Dead-lettered events newest first, each with its latest failed execution, step and error."""
    page = events.list_events(conn, source_system=source_system, event_type=event_type,
                              processing_status="dead_lettered", since=since, until=until, cursor=cursor,
                              limit=limit)
    ids = [item["event_id"] for item in page["items"]]
    failures = {r.event_id: r for r in conn.execute(sa.text(
        "SELECT DISTINCT ON (event_id) event_id, execution_id, workflow_id, failed_step, error_message, "
        "completed_at FROM workflow_executions WHERE event_id = ANY(CAST(:ids AS uuid[])) AND status = 'failed' "
        "ORDER BY event_id, created_at DESC"), {"ids": [str(i) for i in ids]})}
    for item in page["items"]:
        failure = failures.get(item["event_id"])
        item["last_failure"] = None if failure is None else {
            "execution_id": failure.execution_id, "workflow_id": failure.workflow_id,
            "failed_step": failure.failed_step, "error_message": failure.error_message,
            "failed_at": failure.completed_at}
    return page
