"""The scheduler's schedule job starts cron-triggered workflows once per slot, through the job runner."""
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from app.scheduler import JOBS, job_spec, run_named
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


def test_job_intervals_from_settings_replace_a_jobs_trigger_and_its_slot(runtime, database):
    from app.runtime import Runtime
    from services import jobs

    short = Runtime(settings=runtime.settings.model_copy(update={"scheduler_job_intervals": {"weekly-report": 5}}),
                    database=database)
    now = datetime(2033, 1, 2, 3, 4, 7, tzinfo=UTC)
    spec = job_spec(short, "weekly-report")

    assert spec.trigger == {"trigger": "interval", "seconds": 5} and spec.granularity.total_seconds() == 5
    default = job_spec(runtime, "weekly-report").trigger["trigger"]
    assert default.get_next_fire_time(None, datetime(2026, 11, 22, tzinfo=UTC)) == datetime(2026, 11, 23, 7,
                                                                                             tzinfo=UTC)  # Monday
    outcome = run_named(short, "weekly-report", now=now)
    assert outcome.slot == datetime(2033, 1, 2, 3, 4, 5, tzinfo=UTC)
    with database.reader() as conn:
        hosts = {r["host"] for r in jobs.runs_of(conn, "weekly-report") if r["slot"] == outcome.slot}
    assert hosts == {jobs.runner_id()}


def test_the_scheduler_fires_interval_jobs_on_slot_boundaries_and_keeps_partitions_scheduled(runtime, database):
    from flask import Flask

    from app import scheduler as wiring
    from app.runtime import Runtime

    short = Runtime(settings=runtime.settings.model_copy(update={"scheduler_job_intervals": {"alerting": 7}}),
                    database=database)
    server = Flask("scheduler-test")
    scheduler = wiring.init_app(server, short)
    try:
        fires = {job.id: job.next_run_time for job in scheduler.get_jobs()}
    finally:
        server.extensions["scheduler_shutdown"]()

    # Every process computes the same boundaries as jobs.slot_for, whenever it started.
    for job_id, seconds in (("job-alerting", 7), ("job-delivery", 30), ("job-schedules", 30)):
        assert int(fires[job_id].timestamp()) % seconds == 0 and fires[job_id].microsecond == 0, job_id
    assert fires["partitions"] is not None, "an explicit next_run_time=None adds the job paused"


def test_the_weekly_report_follows_the_configured_cron(settings):
    from app.runtime import Runtime

    custom = settings.model_copy(update={"report_cron": "30 6 * * 5"})
    spec = job_spec(Runtime(settings=custom, database=None), "weekly-report")
    trigger = spec.trigger["trigger"]
    fire = trigger.get_next_fire_time(None, datetime(2026, 11, 22, tzinfo=UTC))

    assert fire == datetime(2026, 11, 27, 6, 30, tzinfo=UTC)  # the next Friday, 06:30 UTC


def test_crontab_weekdays_count_from_sunday_as_cron_does():
    from app.scheduler import crontab

    start = datetime(2026, 11, 22, tzinfo=UTC)  # a Sunday
    assert crontab("0 7 * * 0").get_next_fire_time(None, start) == datetime(2026, 11, 22, 7, tzinfo=UTC)
    assert crontab("0 7 * * 7").get_next_fire_time(None, start) == datetime(2026, 11, 22, 7, tzinfo=UTC)
    assert crontab("0 7 * * 1-5").get_next_fire_time(None, start) == datetime(2026, 11, 23, 7, tzinfo=UTC)
    assert crontab("0 7 * * sat").get_next_fire_time(None, start) == datetime(2026, 11, 28, 7, tzinfo=UTC)


def test_a_bad_report_cron_is_refused_with_a_clear_message():
    import pydantic

    from app.settings import Settings

    with pytest.raises(pydantic.ValidationError, match="crontab"):
        Settings(report_cron="every monday")
