"""`flowledger prune | erase | report weekly | jobs run`: the scheduled jobs, runnable from cron."""
from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import click
import sqlalchemy as sa

from app.runtime import Runtime, load_settings, start
from services import erasure, jobs, reports, retention


def _runtime() -> Runtime:
    return start(load_settings(), migrate=False)


@click.command("prune")
@click.option("--dry-run", is_flag=True, help="Print what would be archived, tiered and deleted; change nothing.")
@click.option("--days", type=click.IntRange(1), default=None, help="Hot window in days for every workflow.")
@click.option("--workflow", "workflow_id", default=None, help="Only this workflow.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def prune_command(dry_run: bool, days: int | None, workflow_id: str | None, as_json: bool) -> None:
    """Archive, tier and expire data by each workflow's retention (legal holds exempt)."""
    from app.scheduler import retention_options

    runtime = _runtime()
    try:
        options = retention_options(runtime, dry_run=dry_run, days=days, workflow_id=workflow_id)
        with click.progressbar(length=0, label="pruning", show_pos=True, file=click.get_text_stream("stderr")) as bar:
            def tick(phase: str, n: int) -> None:
                bar.label = phase
                bar.length = (bar.length or 0) + n
                bar.update(n)
            report = retention.prune(runtime.database, runtime.payloads, options=options, progress=tick)
    finally:
        runtime.close()
    if as_json:
        click.echo(json.dumps(report.as_dict(), indent=2, default=str))
        return
    click.echo(("DRY RUN: nothing changed\n" if dry_run else "") + f"{'workflow':<32}{'tier/action':<22}{'count':>10}")
    for workflow, counters in sorted(report.workflows.items()):
        for key, value in sorted(counters.items()):
            click.echo(f"{workflow[:31]:<32}{key:<22}{value:>10}")
    busy = f" ({len(report.partitions_busy)} busy, left for the next run)" if report.partitions_busy else ""
    click.echo(f"archives written {report.archives_written} ({report.archive_bytes} bytes); moved to GLACIER_IR "
               f"{report.tiered_to_glacier}; archives deleted {report.archives_deleted}; audit events deleted "
               f"{report.audit_events_deleted}; partitions dropped {len(report.partitions_dropped)}{busy}; "
               f"longest transaction {report.longest_transaction_ms} ms")


@click.command("erase")
@click.option("--subject-field", required=True, help="Dotted JSON path, e.g. customer.email")
@click.option("--value", required=True, help="The data subject's value to erase.")
@click.option("--dry-run", is_flag=True, help="List what would be erased; change nothing.")
@click.option("--by", "requested_by", default="cli", help="Who asked (recorded in the ERASED audit events).")
@click.option("--json", "as_json", is_flag=True, help="Print the plan or the result as JSON.")
def erase_command(subject_field: str, value: str, dry_run: bool, requested_by: str, as_json: bool) -> None:
    """GDPR erasure: remove a subject's payloads everywhere; keep metadata and record ERASED."""
    runtime = _runtime()
    try:
        plan = erasure.erase(runtime.database, runtime.payloads, subject_field=subject_field, value=value,
                             requested_by=requested_by, dry_run=dry_run)
    finally:
        runtime.close()
    click.echo(json.dumps(plan.as_dict(), indent=2, default=str) if as_json else _erasure_text(plan))


def _erasure_text(plan: erasure.ErasurePlan) -> str:
    """The erasure for a person: what was (or would be) removed, then the ids it concerns."""
    head = "dry run, nothing changed: would erase" if plan.dry_run else f"erasure {plan.erasure_id}: erased"
    lines = [f"{head} the payloads of {len(plan.execution_ids):,} execution(s) and {len(plan.event_ids):,} "
             f"event(s) whose {plan.subject_field} matches, and their copies in {len(plan.archive_uris):,} "
             "archive(s); ids, times, statuses and the audit trail stay"]
    if not plan.dry_run:
        lines.append(f"payloads removed {plan.payloads_removed:,}; objects deleted {plan.objects_deleted:,}")
    if plan.unreadable_archives:
        lines.append(f"WARNING: {len(plan.unreadable_archives)} archive(s) could not be read and were not checked:")
        lines += [f"  {uri}" for uri in plan.unreadable_archives]
    lines += [f"execution {e}" for e in plan.execution_ids] + [f"event {e}" for e in plan.event_ids]
    return "\n".join(lines)


@click.group("report")
def report_group() -> None:
    """Reports sent by email."""


@report_group.command("weekly")
@click.option("--to", "to", multiple=True, help="Recipient (repeatable); default: FLOWLEDGER_REPORT_RECIPIENTS.")
@click.option("--dry-run", is_flag=True, help="Print the plain-text summary instead of sending it.")
def weekly_command(to: tuple[str, ...], dry_run: bool) -> None:
    """Send (or print) the weekly summary now."""
    from app.scheduler import run_weekly_report

    runtime = _runtime()
    try:
        if dry_run:
            with runtime.database.reader() as conn:
                summary = reports.weekly_summary(conn, now=datetime.now(UTC), public_url=runtime.settings.dashboard_url)
            click.echo(reports.render_text(summary))
            return
        result = run_weekly_report(runtime, datetime.now(UTC), to=list(to) or None)
    finally:
        runtime.close()
    click.echo(json.dumps(result, indent=2, default=str))


@click.group("jobs")
def jobs_group() -> None:
    """Scheduled jobs."""


@jobs_group.command("run")
@click.argument("name")
def run_command(name: str) -> None:
    """Run one job now (its own slot, so a scheduled run is not skipped), under the job lock."""
    from app.scheduler import JOBS, run_named

    if name not in JOBS:
        raise click.BadParameter(f"unknown job {name!r}; one of {', '.join(JOBS)}", param_hint="NAME")
    runtime = _runtime()
    try:
        now = datetime.now(UTC)
        outcome = run_named(runtime, name, now=now, slot=now)
    finally:
        runtime.close()
    click.echo(json.dumps({"job": name, "ran": outcome.ran, "status": outcome.status, "detail": outcome.detail},
                          indent=2, default=str))
    if outcome.status == "failed":
        raise SystemExit(1)


def storage_status(conn: sa.Connection) -> dict[str, Any]:
    """Rows and bytes per tier and the last run of each job, for `flowledger status`."""
    hot = conn.execute(sa.text(
        "SELECT count(*) AS n, COALESCE(sum(stored_bytes) FILTER (WHERE uri IS NULL), 0) AS inline, "
        "COALESCE(sum(stored_bytes) FILTER (WHERE uri IS NOT NULL), 0) AS offloaded FROM payloads")).one()
    tiers = conn.execute(sa.text(
        "SELECT COALESCE((SELECT t.storage_class FROM archive_tier_changes t WHERE t.archive_id = m.archive_id "
        "ORDER BY t.id DESC LIMIT 1), m.storage_class) AS tier, count(*) AS objects, sum(m.execution_count) AS rows, "
        "sum(m.size_bytes) AS bytes FROM archive_manifests m GROUP BY 1 ORDER BY 1")).mappings().all()
    return {"tiers": [{"tier": "postgres", "objects": None, "rows": hot.n, "bytes": hot.inline},
                      {"tier": "offloaded", "objects": None, "rows": None, "bytes": hot.offloaded},
                      *[dict(t) for t in tiers]],
            "jobs": jobs.last_runs(conn)}


def print_storage_status(info: dict[str, Any]) -> None:
    """The human form of storage_status."""
    click.echo("storage tiers:")
    for t in info["tiers"]:
        click.echo(f"  {t['tier']:<14} rows {t['rows'] if t['rows'] is not None else '-':>10}  "
                   f"bytes {t['bytes'] or 0:>14}  objects {t['objects'] if t['objects'] is not None else '-':>6}")
    click.echo("last job runs:")
    for run in info["jobs"]:
        click.echo(f"  {run['job']:<16} {run['status']:<10} {run['started_at']:%Y-%m-%d %H:%M:%S} UTC")


def commands() -> list[click.Command]:
    """The commands this module adds to the CLI."""
    return [prune_command, erase_command, report_group, jobs_group]
