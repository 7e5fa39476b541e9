"""Scheduler wiring: APScheduler in process; one leader process (advisory lock) runs it; each job slot runs once."""
from __future__ import annotations

import atexit
import logging
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger
from flask import Flask

from app.runtime import Runtime
from services import alerting, jobs, maintenance, notify, recovery, reports, retention, rollups, sealing

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class JobSpec:
    """A named job: its APScheduler trigger, the slot it is deduplicated by, and what it does."""

    trigger: dict[str, Any]
    granularity: timedelta
    run: Callable[[Runtime, datetime], dict[str, Any]]


def endpoints(runtime: Runtime) -> notify.Endpoints:
    """Delivery endpoints from settings."""
    s = runtime.settings
    return notify.Endpoints(
        pagerduty_url=s.pagerduty_url if s.pagerduty_routing_key else "",
        slack_webhook_url=s.slack_webhook_url.get_secret_value() if s.slack_webhook_url else "",
        smtp_host=s.smtp_host, smtp_port=s.smtp_port, smtp_user=s.smtp_user,
        smtp_password=s.smtp_password.get_secret_value() if s.smtp_password else "", outbox_dir=s.outbox_dir)


def alert_config(runtime: Runtime) -> alerting.AlertConfig:
    """Alert thresholds from settings."""
    s = runtime.settings
    return alerting.AlertConfig(threshold=s.failure_rate_threshold, min_executions=s.alert_min_executions,
                                routing_key=s.pagerduty_routing_key.get_secret_value() if s.pagerduty_routing_key
                                else "", public_url=s.dashboard_url)


def retention_options(runtime: Runtime, **overrides: Any) -> retention.RetentionOptions:
    """Retention knobs from settings, with CLI overrides."""
    s = runtime.settings
    return retention.RetentionOptions(hot_days=s.hot_days, glacier_days=s.glacier_days,
                                      audit_retention_days=s.audit_retention_days, **overrides)


def run_retention(runtime: Runtime, now: datetime) -> dict[str, Any]:
    """The retention job."""
    report = retention.prune(runtime.database, runtime.payloads, now=now, options=retention_options(runtime))
    return report.as_dict()


def run_alerting(runtime: Runtime, now: datetime) -> dict[str, Any]:
    """Failure-rate, incident and missed-run checks plus the DLQ to Slack, then delivery."""
    cfg = alert_config(runtime)
    grace = timedelta(minutes=runtime.settings.missed_run_grace_minutes)
    with runtime.database.writer() as conn:
        actions = alerting.check_failure_rate(conn, cfg, now=now) if cfg.routing_key else []
        if cfg.routing_key:
            actions += alerting.check_incidents(conn, cfg, now=now)
            actions += alerting.check_missed_runs(conn, cfg, now=now, grace=grace)
        dead = alerting.post_dead_letters(conn, cfg, now=now) if runtime.settings.slack_webhook_url else 0
    return {"alerts": actions, "dead_lettered": dead, **notify.deliver(runtime.database, endpoints(runtime), now=now)}


def run_delivery(runtime: Runtime, now: datetime) -> dict[str, Any]:
    """Retry whatever is still waiting in the outbox."""
    return notify.deliver(runtime.database, endpoints(runtime), now=now)


def run_weekly_report(runtime: Runtime, now: datetime, to: list[str] | None = None) -> dict[str, Any]:
    """Build the weekly summary and queue it by email (SMTP, or the outbox folder without a host)."""
    s = runtime.settings
    recipients = to or s.report_recipients
    if not recipients:
        return {"skipped": "no report recipients configured (FLOWLEDGER_REPORT_RECIPIENTS)"}
    with runtime.database.reader() as conn:
        summary = reports.weekly_summary(conn, now=now, public_url=s.dashboard_url)
    message = reports.build_email(summary, sender=s.mail_from, to=recipients, threshold=s.failure_rate_threshold)
    with runtime.database.writer() as conn:
        notify.enqueue(conn, channel="email", payload={"to": recipients, "mime": message.as_string()}, now=now)
    return {"recipients": recipients, "events_processed": summary["events_processed"],
            **notify.deliver(runtime.database, endpoints(runtime), now=now)}


def run_schedules(runtime: Runtime, now: datetime) -> dict[str, Any]:
    """Start every schedule-triggered workflow whose cron slot is due (each slot once, across replicas)."""
    from app.api_workflows import runner_of
    from services import router

    started = router.run_due_schedules(runtime.database, runner_of(runtime), now=now)
    return {"started": [str(i) for i in started]}


def run_recovery(runtime: Runtime, now: datetime) -> dict[str, Any]:
    """End the executions whose process died mid-run (failed, interrupted, event dead-lettered)."""
    return {"interrupted": [str(i) for i in recovery.sweep(runtime.database, now=now)]}


JOBS: dict[str, JobSpec] = {
    "schedules": JobSpec({"trigger": "interval", "seconds": 30}, timedelta(seconds=30), run_schedules),
    "retention": JobSpec({"trigger": "cron", "minute": 17}, timedelta(hours=1), run_retention),
    "alerting": JobSpec({"trigger": "interval", "minutes": 1}, timedelta(minutes=1), run_alerting),
    "delivery": JobSpec({"trigger": "interval", "seconds": 30}, timedelta(seconds=30), run_delivery),
    "recovery": JobSpec({"trigger": "interval", "minutes": 1}, timedelta(minutes=1), run_recovery),
    "weekly-report": JobSpec({"trigger": "cron", "day_of_week": "mon", "hour": 7}, timedelta(days=1),
                             run_weekly_report),
}


# Interval triggers count from this instant, not from process start, so every process fires at the
# same epoch-aligned slot boundaries that `jobs.slot_for` computes. Anchored at process start, a fire
# a few milliseconds late could land in the next slot (that slot then "already ran", this one is lost).
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def job_spec(runtime: Runtime, name: str) -> JobSpec:
    """A job's spec with FLOWLEDGER_SCHEDULER_JOB_INTERVALS applied (a shorter or longer fixed interval)."""
    spec = JOBS[name]
    seconds = runtime.settings.scheduler_job_intervals.get(name)
    if seconds is None and name == "weekly-report":
        # The operators' own schedule (FLOWLEDGER_REPORT_CRON); a slot is still one day, so a
        # schedule firing more than once a day sends one report per day.
        return JobSpec({"trigger": crontab(runtime.settings.report_cron)}, spec.granularity, spec.run)
    if seconds is None:
        return spec
    if seconds < 1:
        raise ValueError(f"FLOWLEDGER_SCHEDULER_JOB_INTERVALS: {name} must be at least 1 second")
    return JobSpec({"trigger": "interval", "seconds": seconds}, timedelta(seconds=seconds), spec.run)


DAY_NAMES = ("sun", "mon", "tue", "wed", "thu", "fri", "sat", "sun")


def crontab(expression: str) -> CronTrigger:
    """A trigger for a standard 5-field crontab line, in UTC.

    APScheduler 3 counts days of the week from Monday = 0, while crontab counts from Sunday = 0 (or 7):
    its from_crontab would run "0 7 * * 1" on Tuesdays. Day numbers are turned into names first.
    """
    fields = expression.split()
    if len(fields) != 5:
        raise ValueError(f"expected 5 fields (minute hour day month weekday), got {len(fields)}")
    fields[4] = re.sub(r"(?<![/\d])([0-7])(?!\d)", lambda m: DAY_NAMES[int(m.group(1))], fields[4])
    minute, hour, day, month, day_of_week = fields
    return CronTrigger(minute=minute, hour=hour, day=day, month=month, day_of_week=day_of_week, timezone=UTC)


def _trigger_args(spec: JobSpec) -> dict[str, Any]:
    # A fire up to one slot late (a busy machine, a long GC) still belongs to its own slot: run it rather
    # than drop it as misfired (APScheduler's default grace is 1 s, which would lose the slot).
    args = {"misfire_grace_time": int(spec.granularity.total_seconds()), **spec.trigger}
    return {"start_date": EPOCH, **args} if spec.trigger["trigger"] == "interval" else args


def run_named(runtime: Runtime, name: str, *, now: datetime | None = None,
              slot: datetime | None = None) -> jobs.JobOutcome:
    """Run one job through the runner (lock + one run per slot); the CLI and the scheduler both come here."""
    spec = job_spec(runtime, name)
    now = now or datetime.now(UTC)
    return jobs.run_job(runtime.database, name, lambda: spec.run(runtime, now),
                        slot=slot or jobs.slot_for(now, spec.granularity))


def _leader_only(leader: jobs.Leader, fn: Callable[[], Any]) -> Callable[[], Any]:
    def run() -> Any:
        if leader.is_leader:
            return fn()
        return None
    return run


def init_app(server: Flask, runtime: Runtime) -> BackgroundScheduler:
    """Start the background scheduler with every job; only the process holding the leader lock runs them."""
    scheduler = BackgroundScheduler(timezone="UTC", job_defaults={"coalesce": True, "max_instances": 1})
    database = runtime.database
    # No next_run_time here: APScheduler 3 reads an explicit None as "add paused", which never ran this job.
    scheduler.add_job(lambda: maintenance.ensure_partitions(database), "interval", hours=6, id="partitions")
    scheduler.add_job(lambda: rollups.run_refresh(database), "interval", minutes=1, id="rollups")
    scheduler.add_job(seal_job(runtime), "interval", id="seal",
                      minutes=runtime.settings.seal_interval_minutes)
    if runtime.settings.opensearch_url:  # the outbox indexer; it takes its own advisory lock
        from app.api_search import index_pending_job
        scheduler.add_job(index_pending_job(runtime), "interval", id="search-outbox",
                          seconds=runtime.settings.opensearch_index_interval_seconds)
    unknown = set(runtime.settings.scheduler_job_intervals) - set(JOBS)
    if unknown:
        log.warning("FLOWLEDGER_SCHEDULER_JOB_INTERVALS names unknown jobs: %s", ", ".join(sorted(unknown)))
    for name in JOBS:
        scheduler.add_job(lambda name=name: run_named(runtime, name), id=f"job-{name}",
                          **_trigger_args(job_spec(runtime, name)))
    leader = jobs.Leader(database)
    for job in scheduler.get_jobs():
        job.modify(func=_leader_only(leader, job.func))
    scheduler.start()
    stop = threading.Event()
    thread = threading.Thread(target=_lead, args=(leader, stop, runtime.settings.scheduler_leader_poll_seconds),
                              name="flowledger-leader", daemon=True)
    thread.start()
    server.extensions["scheduler"] = scheduler
    server.extensions["scheduler_leader"] = leader

    def shutdown() -> None:
        stop.set()
        if scheduler.running:
            scheduler.shutdown(wait=False)
        leader.release()
    server.extensions["scheduler_shutdown"] = shutdown
    atexit.register(shutdown)
    return scheduler


def _lead(leader: jobs.Leader, stop: threading.Event, every: float) -> None:
    """Keep trying to become (or stay) the leader; a dead leader's lock frees itself with its connection."""
    while not stop.is_set():
        try:
            leader.poll()
        except Exception:  # the database may be restarting; try again next round
            log.exception("leader election poll failed")
        stop.wait(every)


def seal_job(rt: Runtime) -> Callable[[], list[int]]:
    """The scheduled sealing job: seal every closed hour (one process at a time, by advisory lock)."""
    def run() -> list[int]:
        with rt.database.writer() as conn:
            created = sealing.seal_closed_periods(conn, rt.payloads.store, now=datetime.now(UTC),
                                                  lock_days=rt.settings.seal_lock_days)
        if created:
            log.info("sealed %d period(s)", len(created))
        return created
    return run
