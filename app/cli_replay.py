"""CLI: `flowledger replay` (bulk replay with a dry run and a progress bar) and `flowledger workflows`."""
from __future__ import annotations

import getpass
import json
import threading
from datetime import datetime
from pathlib import Path

import click

from app.runtime import load_settings, start
from components.format import iso
from services import replay, replay_queue, workflows
from services.runner import Runner


@click.command("replay")
@click.option("--since", type=click.DateTime(), help="Events received at or after (UTC).")
@click.option("--until", type=click.DateTime(), help="Events received before (UTC).")
@click.option("--source", "source_system", help="Source system.")
@click.option("--event-type", help="Event type, e.g. deal.won.")
@click.option("--workflow", "workflow_id", help="Only events that ran this workflow, and only it is replayed.")
@click.option("--status", help="Event status; 'failed' includes dead-lettered events.")
@click.option("--event", "event_ids", multiple=True, help="One event id (repeatable).")
@click.option("--reason", help="Why (required unless --dry-run).")
@click.option("--requested-by", default=lambda: getpass.getuser(), show_default="current user")
@click.option("--dry-run", is_flag=True, help="Print the plan and change nothing.")
@click.option("--force", is_flag=True, help="Include events already fixed by an earlier replay.")
@click.option("--workers", default=4, show_default=True, type=click.IntRange(1, 64))
@click.option("--json", "as_json", is_flag=True, help="Print the dry-run plan as JSON.")
def replay_command(since: datetime | None, until: datetime | None, source_system: str | None,
                   event_type: str | None, workflow_id: str | None, status: str | None, event_ids: tuple[str, ...],
                   reason: str | None, requested_by: str, dry_run: bool, force: bool, workers: int,
                   as_json: bool) -> None:
    """Replay a selection of stored events through the router; steps that already succeeded are skipped."""
    selection = replay.parse_selection({
        "since": _utc(since), "until": _utc(until), "source_system": source_system, "event_type": event_type,
        "workflow_id": workflow_id, "status": status, "event_ids": list(event_ids) or None})
    runtime = start(load_settings())
    try:
        if dry_run:
            with runtime.database.reader() as conn:
                planned = replay.plan(conn, selection, force=force)
            click.echo(json.dumps(planned, indent=2, default=str) if as_json else _plan_text(planned))
            return
        settings = runtime.settings
        runner = Runner(runtime.database, runtime.payloads, threads=settings.runner_threads,
                        secrets={k: v.get_secret_value() for k, v in settings.workflow_secrets.items()},
                        request_id_header=settings.request_id_header)
        with runtime.database.writer() as conn:
            queued = replay.enqueue(conn, selection, requested_by=requested_by, reason=reason or "", force=force)
        click.echo(f"replay {queued['replay_id']}: {queued['total']} event(s) queued", err=True)
        lock = threading.Lock()
        with click.progressbar(length=queued["total"], label="replaying", file=click.get_text_stream("stderr")) as bar:
            def advance(_state: str) -> None:
                with lock:
                    bar.update(1)

            replay_queue.run_workers(runtime.database, runner, workers=workers, replay_id=queued["replay_id"],
                                     lease_seconds=settings.replay_lease_seconds, on_item=advance)
        runner.shutdown(wait=True)
        with runtime.database.reader() as conn:
            progress = replay.get_replay(conn, queued["replay_id"])["progress"]
        click.echo(json.dumps({"replay_id": str(queued["replay_id"]), **progress}))
    finally:
        runtime.close()


def _plan_text(planned: dict) -> str:
    """The dry run for a person: how many events, then per workflow which steps would run again."""
    lines = [f"dry run, nothing changed: {planned['count']:,} event(s) would be replayed"]
    for wf in planned["workflows"]:
        lines += ["", f"{wf['workflow_id']} v{wf['version']}: {wf['events']:,} event(s)",
                  f"  {'step':<28} {'runs again':>10} {'skipped':>8}  side effect"]
        lines += [f"  {step['name']:<28} {step['rerun']:>10,} {step['skipped']:>8,}  "
                  f"{'yes' if step['side_effect'] else 'no'}" for step in wf["steps"]]
    if planned["sample"]:
        lines += ["", "first events:"]
        lines += [f"  {e['event_id']}  {e['source_system']}/{e['event_type'] or '-'}  "
                  f"received {iso(e['received_at'])}  {e['status']}" for e in planned["sample"][:5]]
    if planned["count"]:
        lines += ["", "to replay them, run the same command without --dry-run and with --reason '...'"]
    return "\n".join(lines)


@click.group("workflows")
def workflows_group() -> None:
    """Workflow definitions."""


@workflows_group.command("apply")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--by", "created_by", default=lambda: getpass.getuser(), show_default="current user")
def apply(path: Path, created_by: str) -> None:
    """Create or update a workflow from a JSON or YAML file (a new version only when it changed)."""
    definition = workflows.parse(path.read_bytes())
    runtime = start(load_settings())
    try:
        with runtime.database.writer() as conn:
            version = workflows.save_workflow(conn, definition=definition, created_by=created_by)
    finally:
        runtime.close()
    click.echo(f"{definition.id} version {version}")


@workflows_group.command("list")
def list_command() -> None:
    """The latest version of every workflow."""
    runtime = start(load_settings())
    try:
        with runtime.database.reader() as conn:
            rows = workflows.list_workflows(conn)
    finally:
        runtime.close()
    if not rows:
        click.echo("no workflows yet: flowledger workflows apply FILE (JSON or YAML), or flowledger demo")
        return
    lines = [(r["workflow_id"], f"v{r['version']}", r["definition"]["trigger"]["type"], r["definition"]["name"])
             for r in rows]
    widths = [max(len(line[i]) for line in lines) for i in range(3)]
    for line in lines:
        click.echo("  ".join(cell.ljust(width) for cell, width in zip(line[:3], widths, strict=True)) + "  " + line[3])


def _utc(value: datetime | None) -> str | None:
    return value.isoformat() + "+00:00" if value is not None and value.tzinfo is None else (
        value.isoformat() if value else None)


COMMANDS = [replay_command, workflows_group]
