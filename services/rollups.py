"""Maintained rollups of execution outcomes per workflow and hour, exact thanks to a live tail.

A scheduled job (`refresh`) folds execution_transitions into execution_hourly_stats up to a
recorded_at watermark; readers add the transitions recorded after it (flowledger_hourly_outcomes,
migration 0009), so every answer equals the GROUP BY over the raw tables while reading at most a
few minutes of raw rows. Hours are UTC; windows are whole hours. In the same transaction and up to
the same watermark it folds finished runs by duration bucket (execution_hourly_durations) and
failures by event type and error class (execution_hourly_failures), read by
flowledger_duration_histogram and flowledger_failure_counts (migration 0021), and events per hour
received (event_hourly_stats, flowledger_events_received, migration 0022).
"""
from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection

ROLLUP = "execution_hourly"
TERMINAL = ("completed", "failed", "timed_out", "cancelled")
FAILED = ("failed", "timed_out")
HOUR = timedelta(hours=1)

# The watermark may only pass rows whose transaction has ended: a row becomes visible when its
# transaction commits but carries the transaction's start (recorded_at, received_at). So the cutoff is
# held below the start of the oldest open writer transaction, whether or not it has written yet: one
# that began before a refresh and writes after it would otherwise land behind the watermark, in neither
# the rollup nor the tail (writers are the only role that inserts these rows, and a role sees its own
# sessions in pg_stat_activity).
CUTOFF_SQL = sa.text("""
SELECT least(clock_timestamp() - make_interval(secs => :lag),
             (SELECT min(a.xact_start) FROM pg_stat_activity a
              WHERE a.xact_start IS NOT NULL AND a.pid <> pg_backend_pid()))
""")
FOLD_SQL = sa.text("""
INSERT INTO execution_hourly_stats (workflow_id, hour, status, executions)
SELECT s.workflow_id, date_trunc('hour', t.at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC', t.status, count(*)
FROM execution_transitions t JOIN execution_state s ON s.execution_id = t.execution_id
WHERE t.recorded_at >= :since AND t.recorded_at < :cutoff
GROUP BY 1, 2, 3
ON CONFLICT (hour, workflow_id, status) DO UPDATE
  SET executions = execution_hourly_stats.executions + EXCLUDED.executions
""")
# The same outcomes by duration bucket, and failures by event type and error class (migration 0021).
FOLD_DURATIONS_SQL = sa.text("""
INSERT INTO execution_hourly_durations (hour, workflow_id, bucket, executions)
SELECT f.hour, f.workflow_id, f.bucket, count(*) FROM flowledger_finished_runs f
WHERE f.recorded_at >= :since AND f.recorded_at < :cutoff AND f.bucket IS NOT NULL
GROUP BY 1, 2, 3
ON CONFLICT (hour, workflow_id, bucket)
  DO UPDATE SET executions = execution_hourly_durations.executions + EXCLUDED.executions
""")
FOLD_FAILURES_SQL = sa.text("""
INSERT INTO execution_hourly_failures (hour, workflow_id, event_type, error, executions)
SELECT f.hour, f.workflow_id, f.event_type, f.error, count(*) FROM flowledger_finished_runs f
WHERE f.recorded_at >= :since AND f.recorded_at < :cutoff AND f.error IS NOT NULL
GROUP BY 1, 2, 3, 4
ON CONFLICT (hour, workflow_id, event_type, error)
  DO UPDATE SET executions = execution_hourly_failures.executions + EXCLUDED.executions
""")
# Events per hour received (migration 0022): received_at is the inserting transaction's start, like recorded_at.
FOLD_EVENTS_SQL = sa.text("""
INSERT INTO event_hourly_stats (hour, events)
SELECT date_trunc('hour', e.received_at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC', count(*) FROM event_state e
WHERE e.received_at >= :since AND e.received_at < :cutoff
GROUP BY 1
ON CONFLICT (hour) DO UPDATE SET events = event_hourly_stats.events + EXCLUDED.events
""")


def refresh(conn: Connection, *, lag_seconds: float = 2.0) -> dict[str, Any]:
    """Fold the transitions recorded since the watermark into the hourly rollup; returns what moved."""
    conn.execute(sa.text(
        "INSERT INTO rollup_watermarks (rollup, recorded_before) VALUES (:r, '1970-01-01 00:00+00') "
        "ON CONFLICT (rollup) DO NOTHING"), {"r": ROLLUP})
    # The row lock serialises concurrent refreshes even outside the job runner's advisory lock.
    since = conn.execute(sa.text(
        "SELECT recorded_before FROM rollup_watermarks WHERE rollup = :r FOR UPDATE"), {"r": ROLLUP}).scalar_one()
    cutoff = conn.execute(CUTOFF_SQL, {"lag": lag_seconds}).scalar_one()
    if cutoff <= since:
        return {"rows": 0, "watermark": since}
    rows = conn.execute(FOLD_SQL, {"since": since, "cutoff": cutoff}).rowcount
    for fold in (FOLD_DURATIONS_SQL, FOLD_FAILURES_SQL, FOLD_EVENTS_SQL):
        conn.execute(fold, {"since": since, "cutoff": cutoff})
    conn.execute(sa.text(
        "UPDATE rollup_watermarks SET recorded_before = :c, updated_at = now() WHERE rollup = :r"),
        {"c": cutoff, "r": ROLLUP})
    return {"rows": rows, "watermark": cutoff}


def hourly_outcomes(conn: Connection, *, since: datetime, until: datetime) -> list[dict[str, Any]]:
    """Transitions per (workflow, UTC hour, status) for the whole hours in [since, until)."""
    rows = conn.execute(sa.text(
        "SELECT workflow_id, hour, status, executions FROM flowledger_hourly_outcomes(:s, :u) "
        "ORDER BY hour, workflow_id, status"), {"s": floor_hour(since), "u": floor_hour(until)}).mappings()
    return [dict(r) for r in rows]


def floor_hour(moment: datetime) -> datetime:
    """The start of the UTC hour containing moment."""
    return moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def run_refresh(database: Any) -> dict[str, Any]:
    """The scheduled job: one refresh in its own writer transaction."""
    with database.writer() as conn:
        return refresh(conn)
