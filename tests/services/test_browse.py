"""The executions grid's page: the started and the finished windows, each half-open, and several statuses."""
from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from services import browse
from tests.services.dashboard_factories import record
from tests.services.query_plans import ordered_plan

HOUR = datetime(2011, 6, 15, 14, 0, tzinfo=UTC)
MINUTE = 60_000


@pytest.fixture(scope="module")
def runs(database, runtime) -> dict[str, uuid.UUID]:
    """Runs around the 14:00 hour; `record` ends a run one second after its last step."""
    workflow = f"browse-{uuid.uuid4().hex[:8]}"
    plans = {
        "failed_across_the_hour": (HOUR - timedelta(minutes=10), "failed", 20 * MINUTE),   # 13:50 -> 14:10:01
        "ended_on_the_hour": (HOUR - timedelta(minutes=30), "failed", 30 * MINUTE - 1000),  # 13:30 -> 14:00:00
        "completed_inside": (HOUR + timedelta(minutes=20), "completed", 100),                 # 14:20 -> 14:20:01
        "ended_at_the_next_hour": (HOUR + timedelta(minutes=40), "completed", 20 * MINUTE - 1000),  # -> 15:00:00
        "timed_out_next_hour": (HOUR + timedelta(minutes=50), "timed_out", 15 * MINUTE),     # 14:50 -> 15:05:01
    }
    ids = {"workflow": workflow}
    with database.writer() as conn:
        for name, (at, status, ms) in plans.items():
            step = {"step_name": "work", "status": status, "ms": ms,
                    "error_message": None if status == "completed" else f"{name} went wrong"}
            ids[name] = record(conn, runtime.payloads, workflow_id=workflow, at=at, status=status, steps=[step])
    return ids


def _listed(database, runs, **filters) -> set[str]:
    with database.reader() as conn:
        page = browse.executions_page(conn, workflow_id=runs["workflow"], **filters)
    names = {value: name for name, value in runs.items()}
    return {names[row["execution_id"]] for row in page["rows"]}


def test_the_finished_window_lists_runs_by_the_hour_they_ended_including_its_start_and_not_its_end(database, runs):
    listed = _listed(database, runs, finished_since=HOUR, finished_until=HOUR + timedelta(hours=1))
    assert listed == {"failed_across_the_hour", "ended_on_the_hour", "completed_inside"}


def test_the_started_window_still_bounds_the_start_only(database, runs):
    listed = _listed(database, runs, since=HOUR, until=HOUR + timedelta(hours=1))
    assert listed == {"completed_inside", "ended_at_the_next_hour", "timed_out_next_hour"}


def test_the_started_and_finished_windows_combine(database, runs):
    listed = _listed(database, runs, since=HOUR - timedelta(hours=1), until=HOUR,
                     finished_since=HOUR + timedelta(minutes=5), finished_until=HOUR + timedelta(hours=1))
    assert listed == {"failed_across_the_hour"}


def test_one_status_or_several_narrow_the_list(database, runs):
    window = {"finished_since": HOUR, "finished_until": HOUR + timedelta(hours=2)}
    assert _listed(database, runs, status="failed", **window) == {"failed_across_the_hour", "ended_on_the_hour"}
    assert _listed(database, runs, status=["failed", "timed_out"], **window) == {
        "failed_across_the_hour", "ended_on_the_hour", "timed_out_next_hour"}


@pytest.mark.parametrize("read", [
    lambda conn: browse.executions_page(conn),
    lambda conn: browse.executions_page(conn, sort=["started_at"]),
    lambda conn: browse.executions_page(conn, status="failed"),
    lambda conn: browse.events_page(conn),
], ids=["executions newest first", "executions oldest first", "failed executions", "events newest first"])
def test_a_grids_first_page_is_read_in_index_order_without_sorting_the_ledger(database, read):
    # NULLS LAST on a descending sort had no index, and the first page sorted every run
    with database.reader() as conn:
        plan = ordered_plan(conn, read)  # the page itself; the capped count follows
    assert '"Node Type": "Sort"' not in plan
