"""Storage forecast per workflow: volume, bytes per execution per tier, 30-day and steady-state size."""
from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection

DAILY_SQL = sa.text("""
SELECT s.workflow_id,
       date_trunc('day', COALESCE(s.started_at, s.created_at)) AS day,
       count(DISTINCT s.execution_id) AS executions,
       COALESCE(sum(p.stored_bytes) FILTER (WHERE p.data IS NOT NULL), 0) AS hot_bytes,
       COALESCE(sum(p.stored_bytes) FILTER (WHERE p.uri IS NOT NULL), 0) AS object_bytes
FROM execution_state s
LEFT JOIN payloads p ON p.execution_id = s.execution_id
WHERE COALESCE(s.started_at, s.created_at) >= :since AND COALESCE(s.started_at, s.created_at) < :until
  AND (CAST(:workflow AS text) IS NULL OR s.workflow_id = :workflow)
GROUP BY 1, 2
ORDER BY 1, 2
""")
CURRENT_SQL = sa.text("""
SELECT s.workflow_id,
       COALESCE(sum(p.stored_bytes) FILTER (WHERE p.data IS NOT NULL), 0) AS hot_bytes,
       COALESCE(sum(p.stored_bytes) FILTER (WHERE p.uri IS NOT NULL), 0) AS object_bytes
FROM execution_state s LEFT JOIN payloads p ON p.execution_id = s.execution_id
WHERE (CAST(:workflow AS text) IS NULL OR s.workflow_id = :workflow)
GROUP BY 1
""")
ARCHIVE_SQL = sa.text("""
SELECT workflow_id, COALESCE(sum(size_bytes), 0) AS archive_bytes FROM archive_manifests
WHERE (CAST(:workflow AS text) IS NULL OR workflow_id = :workflow) GROUP BY 1
""")
RETENTION_SQL = sa.text("""
SELECT DISTINCT ON (workflow_id) workflow_id, retention_days FROM workflow_versions
ORDER BY workflow_id, version DESC
""")
JUMP_FACTOR = 3.0


@dataclass(frozen=True)
class WorkflowForecast:
    """One workflow's storage today and where it is heading."""

    workflow_id: str
    executions_per_day: float
    bytes_per_execution: float
    hot_bytes: int
    object_bytes: int
    archive_bytes: int
    retention_days: int | None
    forecast_30d_bytes: int
    steady_state_bytes: int | None
    latest_bytes_per_execution: float
    median_7d_bytes_per_execution: float
    jumped: bool


def storage_forecast(conn: Connection, *, now: datetime, workflow_id: str | None = None,
                     window_days: int = 7, default_retention_days: int = 90) -> list[dict[str, Any]]:
    """Per workflow: executions/day and bytes/execution over the window, tiers now, 30-day and steady state.

    Steady state is executions/day x days retained x bytes per execution; a workflow whose latest
    day's bytes per execution exceed 3x the median of the window's days is flagged as jumped.
    """
    today = now.replace(hour=0, minute=0, second=0, microsecond=0)
    since = today - timedelta(days=window_days)
    daily: dict[str, list[Any]] = {}
    for row in conn.execute(DAILY_SQL, {"since": since, "until": now, "workflow": workflow_id}):
        daily.setdefault(row.workflow_id, []).append(row)
    current = {r.workflow_id: r for r in conn.execute(CURRENT_SQL, {"workflow": workflow_id})}
    archives = {r.workflow_id: int(r.archive_bytes) for r in conn.execute(ARCHIVE_SQL, {"workflow": workflow_id})}
    retention = {r.workflow_id: r.retention_days for r in conn.execute(RETENTION_SQL)}
    results = []
    for wf in sorted(set(daily) | set(current)):
        days = daily.get(wf, [])
        results.append(asdict(_forecast(wf, days, current.get(wf), archives.get(wf, 0),
                                        retention.get(wf) or default_retention_days, window_days)))
    return results


def _forecast(workflow_id: str, days: list[Any], current: Any, archive_bytes: int, retention_days: int,
              window_days: int) -> WorkflowForecast:
    executions = sum(d.executions for d in days)
    stored = sum(int(d.hot_bytes) + int(d.object_bytes) for d in days)
    per_day = executions / window_days
    per_execution = stored / executions if executions else 0.0
    daily_ratios = [(int(d.hot_bytes) + int(d.object_bytes)) / d.executions for d in days if d.executions]
    latest = daily_ratios[-1] if daily_ratios else 0.0
    median = statistics.median(daily_ratios[:-1]) if len(daily_ratios) > 1 else latest
    hot = int(current.hot_bytes) if current else 0
    objects = int(current.object_bytes) if current else 0
    return WorkflowForecast(
        workflow_id=workflow_id, executions_per_day=round(per_day, 2), bytes_per_execution=round(per_execution, 1),
        hot_bytes=hot, object_bytes=objects, archive_bytes=archive_bytes, retention_days=retention_days,
        forecast_30d_bytes=int(hot + objects + archive_bytes + per_day * 30 * per_execution),
        steady_state_bytes=int(per_day * retention_days * per_execution),
        latest_bytes_per_execution=round(latest, 1), median_7d_bytes_per_execution=round(median, 1),
        jumped=bool(median and latest > JUMP_FACTOR * median))
