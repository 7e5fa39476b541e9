"""Maintained rollups answer exactly what the raw GROUP BY answers, including the un-rolled tail."""
from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from app.runtime import Runtime
from services import recording, rollups
from services.recording import NewExecution

NOW = datetime.now(UTC)

RAW_SQL = sa.text("""
SELECT s.workflow_id, date_trunc('hour', t.at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' AS hour, t.status,
       count(*) AS executions
FROM execution_transitions t JOIN execution_state s ON s.execution_id = t.execution_id
WHERE s.workflow_id = ANY(:wfs) AND t.at >= :since AND t.at < :until
GROUP BY 1, 2, 3 ORDER BY 2, 1, 3
""")


def _record(runtime: Runtime, workflow_id: str, *, hours_ago: float, status: str) -> None:
    at = NOW - timedelta(hours=hours_ago)
    with runtime.database.writer() as conn:
        record = recording.create_execution(conn, runtime.payloads, NewExecution(workflow_id=workflow_id,
                                                                                 started_at=at))
        recording.start_execution(conn, execution_id=record.execution_id, at=at)
        if status != "running":
            recording.finish_execution(conn, execution_id=record.execution_id, status=status,
                                       at=at + timedelta(seconds=3), error_message="boom" if status != "completed"
                                       else None)


def _populate(runtime: Runtime, workflows: list[str], offset: int) -> None:
    statuses = ("completed", "completed", "failed", "timed_out", "completed", "cancelled", "running")
    for i in range(21):
        _record(runtime, workflows[i % len(workflows)], hours_ago=(i * 7 + offset) % 50 + 0.2,
                status=statuses[(i + offset) % len(statuses)])


def _mine(rows: list[dict], workflows: list[str]) -> list[tuple]:
    return sorted((r["workflow_id"], r["hour"], r["status"], r["executions"]) for r in rows
                  if r["workflow_id"] in workflows)


def test_rollup_plus_tail_equals_the_raw_group_by(runtime: Runtime) -> None:
    workflows = [f"rollup-{uuid.uuid4().hex[:8]}-{n}" for n in range(3)]
    since, until = rollups.floor_hour(NOW) - timedelta(days=3), rollups.floor_hour(NOW) + timedelta(hours=1)
    _populate(runtime, workflows, 0)
    with runtime.database.writer() as conn:
        moved = rollups.refresh(conn, lag_seconds=0)
    assert moved["rows"] > 0
    _populate(runtime, workflows, 3)  # recorded after the watermark: only the live tail knows them

    with runtime.database.reader() as conn:
        answer = _mine(rollups.hourly_outcomes(conn, since=since, until=until), workflows)
        raw = [tuple(r) for r in conn.execute(RAW_SQL, {"wfs": workflows, "since": since, "until": until})]
    assert answer == sorted(raw)
    assert sum(r[3] for r in answer) == 42 * 2 - 6  # two transitions each, minus the six still running


def test_a_refresh_with_nothing_new_moves_nothing(runtime: Runtime) -> None:
    with runtime.database.writer() as conn:
        rollups.refresh(conn, lag_seconds=3600)
        again = rollups.refresh(conn, lag_seconds=3600)
    assert again["rows"] == 0


def test_a_writer_transaction_that_has_not_written_yet_holds_the_watermark_back(runtime: Runtime) -> None:
    """Rows carry their transaction's start (recorded_at, received_at). A transaction that began before a refresh
    but wrote only after it must still be counted: the watermark may not pass its start."""
    workflow = f"rollup-late-{uuid.uuid4().hex[:8]}"
    since, until = rollups.floor_hour(NOW) - timedelta(days=1), rollups.floor_hour(NOW) + timedelta(days=1)
    with runtime.database.writer() as late:
        late.execute(sa.text("SELECT 1"))  # the transaction has begun and has written nothing yet
        with runtime.database.writer() as conn:
            rollups.refresh(conn, lag_seconds=0)
        record = recording.create_execution(late, runtime.payloads, NewExecution(workflow_id=workflow, started_at=NOW))
        recording.start_execution(late, execution_id=record.execution_id, at=NOW)
    with runtime.database.writer() as conn:
        rollups.refresh(conn, lag_seconds=0)
    with runtime.database.reader() as conn:
        answer = _mine(rollups.hourly_outcomes(conn, since=since, until=until), [workflow])
        raw = [tuple(r) for r in conn.execute(RAW_SQL, {"wfs": [workflow], "since": since, "until": until})]
    assert answer == sorted(raw) and raw


def test_a_session_left_idle_in_a_transaction_is_ended_so_the_watermark_moves_on(database) -> None:
    """A leaked writer transaction would hold the watermark (and the overview's live tail) back forever;
    the server ends it after the idle-in-transaction timeout the product's connections carry."""
    import time

    from services.db import Database

    short = Database(admin_url=database.admin_url, roles=database.roles, passwords=database.passwords,
                     idle_transaction_timeout_s=1)
    leaked = short.engine("writer").connect()
    try:
        began, pid = leaked.execute(sa.text("SELECT now(), pg_backend_pid()")).one()  # begun, then left idle
        with short.writer() as conn:
            assert conn.execute(rollups.CUTOFF_SQL, {"lag": 0}).scalar_one() <= began
        deadline = time.monotonic() + 30
        with database.autocommit("admin") as admin:  # each query sees pg_stat_activity afresh
            while admin.execute(sa.text("SELECT count(*) FROM pg_stat_activity WHERE pid = :p"),
                                {"p": pid}).scalar_one():
                assert time.monotonic() < deadline, "the idle transaction was never ended"
                time.sleep(0.05)  # polling interval
        with short.writer() as conn:
            assert conn.execute(rollups.CUTOFF_SQL, {"lag": 0}).scalar_one() > began
        with pytest.raises(sa.exc.DBAPIError):
            leaked.execute(sa.text("SELECT 1"))
    finally:
        leaked.close()
        short.dispose()
