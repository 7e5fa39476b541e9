"""The scheduler's schedule job starts cron-triggered workflows once per slot, through the job runner."""
from datetime import UTC, datetime

import sqlalchemy as sa

from app.scheduler import JOBS, run_named
from tests.services.runner_helpers import save, unique, wait_status


def test_the_schedules_job_starts_a_due_workflow_once_per_slot(runtime, database):
    workflow_id = unique("cron-job")
    save(database, {"id": workflow_id, "name": "every minute", "trigger": {"type": "schedule", "cron": "* * * * *"},
                    "steps": [{"name": "stamp", "type": "transform", "fields": {"when": "scheduled_for"}}]})
    now = datetime(2032, 3, 4, 5, 6, 7, tzinfo=UTC)

    first = run_named(runtime, "schedules", now=now)
    again = run_named(runtime, "schedules", now=now)

    assert "schedules" in JOBS
    assert first.ran and first.status == "succeeded", first
    assert not again.ran
    with database.reader() as conn:
        rows = conn.execute(sa.text("SELECT execution_id, trigger_source FROM executions WHERE workflow_id = :w"),
                            {"w": workflow_id}).all()
    assert len(rows) == 1 and rows[0].trigger_source == "schedule"
    assert wait_status(database, rows[0].execution_id) == "completed"
