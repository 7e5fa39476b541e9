"""Overview metrics over executions recorded in a window no other test uses."""
from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from services import metrics, recording, rollups
from services.errors import InvalidInput
from services.recording import NewExecution
from tests.services.dashboard_factories import record
from tests.services.jobs_factories import ingest_event

BASE = datetime(2019, 6, 1, 10, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def window(database, runtime):
    """20 runs at 10:00 (1 failed), 20 at 11:00 (6 failed) and 2 at 12:00 (1 failed), for a workflow only
    this module uses."""
    workflow = f"metrics-{uuid.uuid4().hex[:8]}"
    with database.writer() as conn:
        for i in range(20):
            failed = i == 0
            record(conn, runtime.payloads, workflow_id=workflow, at=BASE + timedelta(minutes=i),
                   status="failed" if failed else "completed",
                   error="HTTP 409 contact C-12345 already exists" if failed else None)
        for i in range(20):
            failed = i < 6
            record(conn, runtime.payloads, workflow_id=workflow, at=BASE + timedelta(hours=1, minutes=i),
                   status="failed" if failed else "completed",
                   error=f"HTTP 409 contact C-{i}{i}{i}99 already exists" if failed else None)
        for i in range(2):
            record(conn, runtime.payloads, workflow_id=workflow, at=BASE + timedelta(hours=2, minutes=i),
                   status="failed" if i == 0 else "completed", error="HTTP 409 contact C-4 already exists")
    return metrics.Period(BASE - timedelta(hours=1), BASE + timedelta(hours=3)), workflow


def test_kpis_count_the_runs_started_and_finished_in_the_period_and_give_the_success_rate(database, window):
    period, workflow = window
    with database.reader() as conn:
        kpis = metrics.kpis(conn, window=period, workflow_id=workflow)
    assert kpis["executions"] == 42 and kpis["failed"] == 8
    assert kpis["success_rate"] == pytest.approx(34 / 42)
    assert kpis["p95_ms"] is not None


def test_only_an_hour_above_five_percent_with_enough_runs_to_page_is_a_crossing(database, window):
    period, workflow = window
    with database.reader() as conn:
        hourly = metrics.failure_rate_hourly(conn, window=period, workflow_id=workflow)
    crossed = metrics.crossings(hourly)
    assert list(crossed["hour"].dt.hour) == [11]  # not 10 (exactly 5%), not 12 (1 of 2 runs: too few to page)
    assert hourly.loc[hourly["hour"].dt.hour == 10, "rate"].item() == pytest.approx(0.05)
    assert hourly.loc[hourly["hour"].dt.hour == 12, "rate"].item() == pytest.approx(0.5)
    assert crossed.iloc[0]["rate"] == pytest.approx(0.3)
    assert len(hourly) == 5  # quiet hours of the window are filled with zero runs


def test_errors_that_differ_only_by_ids_are_one_failure_category(database, window):
    period, _ = window
    with database.reader() as conn:
        by_error = metrics.top_failures(conn, window=period, by="error")
    assert by_error.iloc[0]["failures"] == 8
    assert "C-" not in by_error.iloc[0]["error"]


def test_a_custom_period_needs_its_start_before_its_end():
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert metrics.period("7d", now=now).since == now - timedelta(days=7)
    with pytest.raises(InvalidInput):
        metrics.period("custom", now=now, since=now)
    with pytest.raises(InvalidInput):
        metrics.period("fortnight", now=now)


def test_a_run_counts_where_it_finished_and_the_overview_equals_the_raw_rows_before_and_after_a_rollup(
        database, runtime):
    """The overview reads the hourly rollup (rolled hours plus the live tail); both must give the raw answer."""
    workflow = f"metrics-late-{uuid.uuid4().hex[:8]}"
    start = datetime(2019, 7, 1, 9, 50, tzinfo=UTC)
    with database.writer() as conn:
        # Starts at 09:50, runs 20 minutes, fails at 10:10: its outcome belongs to 10:00.
        record(conn, runtime.payloads, workflow_id=workflow, at=start, status="failed",
               steps=[{"step_name": "sync", "status": "failed", "ms": 20 * 60_000, "error_message": "HTTP 502"}])
        for minute in range(3):
            record(conn, runtime.payloads, workflow_id=workflow, at=start + timedelta(minutes=20 + minute))
    period = metrics.Period(datetime(2019, 7, 1, 9, 0, tzinfo=UTC), datetime(2019, 7, 1, 12, 0, tzinfo=UTC))

    def read() -> tuple:
        with database.reader() as conn:
            hourly = metrics.failure_rate_hourly(conn, window=period, workflow_id=workflow)
            kpis = metrics.kpis(conn, window=period, workflow_id=workflow)
            counts = metrics.status_counts(conn, window=period, workflow_id=workflow)
            health = metrics.workflow_health(conn, window=period)
        by_hour = {row.hour.hour: (row.executions, row.failed) for row in hourly.itertuples()}
        mine = health[health["workflow_id"] == workflow].iloc[0]
        return (by_hour, kpis["executions"], kpis["failed"], dict(zip(counts["status"], counts["count"], strict=True)),
                (int(mine["executions"]), int(mine["failed"])))

    before = read()
    assert before[0][9] == (0, 0) and before[0][10] == (4, 1)
    assert before[1:] == (4, 1, {"completed": 3, "failed": 1}, (4, 1))
    with database.writer() as conn:
        rollups.refresh(conn, lag_seconds=0)
    assert read() == before


def test_a_run_still_going_is_counted_as_running_beside_the_finished_outcomes(database, runtime):
    workflow = f"metrics-open-{uuid.uuid4().hex[:8]}"
    at = datetime(2019, 8, 1, 10, 0, tzinfo=UTC)
    with database.writer() as conn:
        record(conn, runtime.payloads, workflow_id=workflow, at=at)
        open_run = recording.create_execution(conn, runtime.payloads,
                                              NewExecution(workflow_id=workflow, started_at=at))
        recording.start_execution(conn, execution_id=open_run.execution_id, at=at)
    with database.reader() as conn:
        counts = metrics.status_counts(conn, window=metrics.Period(at, at + timedelta(hours=1)), workflow_id=workflow)
        kpis = metrics.kpis(conn, window=metrics.Period(at, at + timedelta(hours=1)), workflow_id=workflow)
    assert dict(zip(counts["status"], counts["count"], strict=True)) == {"completed": 1, "running": 1}
    assert (kpis["executions"], kpis["completed"], kpis["success_rate"]) == (2, 1, 1.0)


def test_p95_and_the_failure_lists_come_out_the_same_before_and_after_a_rollup_and_p95_is_within_5_percent(
        database, runtime):
    """p95 is read from the finished-runs rollup's duration buckets: it must stay within 5% of the exact
    percentile of the runs, and the rolled hours plus the live tail must answer like the tail alone."""
    workflow = f"metrics-p95-{uuid.uuid4().hex[:8]}"
    start = datetime(2019, 9, 1, 9, 0, tzinfo=UTC)
    with database.writer() as conn:
        for i in range(40):  # steps of 1..40 s: each run takes its step's duration plus the 1 s finish gap
            record(conn, runtime.payloads, workflow_id=workflow, at=start + timedelta(minutes=i),
                   steps=[{"step_name": "work", "status": "completed", "ms": (i + 1) * 1000}])
        # Starts at 09:50 and fails at 10:10: it belongs to the 10:00 hour, the window below starts at 10:00.
        record(conn, runtime.payloads, workflow_id=workflow, at=start + timedelta(minutes=50), status="failed",
               steps=[{"step_name": "sync", "status": "failed", "ms": 20 * 60_000,
                       "error_message": "HTTP 409 contact C-777 already exists"}])
    late = metrics.Period(datetime(2019, 9, 1, 10, 0, tzinfo=UTC), datetime(2019, 9, 1, 11, 0, tzinfo=UTC))
    whole = metrics.Period(start, datetime(2019, 9, 1, 11, 0, tzinfo=UTC))

    def read() -> tuple:
        with database.reader() as conn:
            p95 = metrics.kpis(conn, window=whole, workflow_id=workflow)["p95_ms"]
            exact = conn.exec_driver_sql(
                "SELECT percentile_cont(0.95) WITHIN GROUP (ORDER BY duration_ms) FROM execution_state "
                f"WHERE workflow_id = '{workflow}'").scalar_one()
            lists = {by: metrics.top_failures(conn, window=late, by=by)
                     for by in ("error", "workflow_id", "event_type")}
        mine = lists["workflow_id"][lists["workflow_id"]["workflow_id"] == workflow]
        errors = dict(zip(lists["error"]["error"], lists["error"]["failures"], strict=True))
        by_type = dict(zip(lists["event_type"]["event_type"], lists["event_type"]["failures"], strict=True))
        return (p95, exact, int(mine["failures"].sum()), errors.get("sync: HTTP 409 contact … already exists"),
                sum(by_type.values()))

    before = read()
    assert before[0] == pytest.approx(before[1], rel=0.05)
    assert before[2:] == (1, 1, 1)  # counted in the hour it failed (no other run of this window failed), id blanked
    with database.writer() as conn:
        rollups.refresh(conn, lag_seconds=0)
    assert read() == before


def test_events_received_are_counted_over_the_whole_hours_the_same_before_and_after_a_rollup(database, runtime):
    """The events card reads the hourly events rollup plus the events received after its watermark."""
    now = datetime.now(UTC)
    period = metrics.Period(now - timedelta(hours=3), now)
    hours = {"s": rollups.floor_hour(period.since), "u": rollups.floor_hour(period.until) + rollups.HOUR}
    raw_sql = sa.text("SELECT count(*) FROM event_state WHERE received_at >= :s AND received_at < :u")
    with database.writer() as conn:
        rollups.refresh(conn, lag_seconds=0)  # what earlier tests stored is rolled up
    with database.writer() as conn:  # received after the watermark: the live tail
        for i in range(3):
            ingest_event(conn, {"order": {"id": f"O-{i}"}}, event_type="order.created")
    with database.reader() as conn:
        before, raw = metrics.kpis(conn, window=period)["events"], conn.execute(raw_sql, hours).scalar_one()
    assert before == raw and raw >= 3
    with database.writer() as conn:
        rollups.refresh(conn, lag_seconds=0)
    with database.reader() as conn:
        assert metrics.kpis(conn, window=period)["events"] == before
