"""`flowledger execution ...`: inspect one execution from the ledger."""
from __future__ import annotations

import json
from typing import Any
from uuid import UUID

import click

from app.jsonio import ApiJSONProvider
from app.runtime import load_settings, start
from services import admin_audit, deletion, inspection
from services.errors import InvalidInput


@click.group("execution")
def execution() -> None:
    """Inspect executions."""


@execution.command("inspect")
@click.argument("execution_id")
@click.option("--json", "as_json", is_flag=True, help="Print the whole record as JSON (with audit_events).")
@click.option("--no-payloads", is_flag=True, help="Leave step inputs and outputs out.")
def inspect(execution_id: str, as_json: bool, no_payloads: bool) -> None:
    """Print an execution with its steps, audit events and log lines."""
    key = _execution_key(execution_id)
    runtime = start(load_settings(), migrate=False)
    try:
        with runtime.database.reader() as conn:
            record = inspection.get_execution(conn, runtime.payloads, key, include_payloads=not no_payloads)
    finally:
        runtime.close()
    if as_json:
        click.echo(json.dumps(record, default=ApiJSONProvider.default, indent=2))
        return
    _print_human(record)


@execution.command("delete")
@click.argument("execution_id")
@click.option("--force", is_flag=True, help="Required: the deletion cannot be undone.")
@click.option("--reason", required=True, help="Why; kept in the admin audit log and the execution's audit trail.")
@click.option("--user", "username", required=True, help="The admin (with executions.force-delete) doing it.")
def delete(execution_id: str, force: bool, reason: str, username: str) -> None:
    """Remove an execution, its steps and payloads for good (audit events stay)."""
    if not force:
        raise InvalidInput("force-delete removes the execution for good; repeat with --force")
    key = _execution_key(execution_id)
    runtime = start(load_settings(), migrate=False)
    try:
        with runtime.database.writer() as conn:
            deletion.check_permission(conn, username=username)
        with runtime.database.maintainer() as conn:
            done = deletion.force_delete(conn, runtime.payloads.store, execution_id=key, actor=username,
                                         reason=reason)
            admin_audit.record(conn, actor=username, action="execution.force_delete", target=str(key),
                               detail={"reason": reason, "rows": done.rows, "objects": done.objects},
                               remote_addr="cli")
    finally:
        runtime.close()
    click.echo(f"deleted execution {key}: {sum(done.rows.values())} row(s), {done.objects} object(s); "
               "audit events kept")


def _execution_key(value: str) -> UUID:
    try:
        return UUID(value)
    except ValueError:
        raise InvalidInput(f"{value!r} is not an execution id (a UUID)") from None


def _print_human(record: dict[str, Any]) -> None:
    click.echo(f"execution  {record['execution_id']}  [{record['status']}]")
    click.echo(f"workflow   {record['workflow_id']} v{record['workflow_version'] or '-'}  "
               f"trigger {record['trigger_source']}  event {record['event_id'] or '-'}")
    click.echo(f"time       {record['started_at'] or '-'} -> {record['completed_at'] or '-'}  "
               f"({record['duration_ms'] if record['duration_ms'] is not None else '-'} ms)")
    click.echo(f"trace      {record['traceparent']}")
    if record["error_message"]:
        click.secho(f"error      {record['failed_step'] or '?'}: {record['error_message']}", fg="red")
    click.echo("steps:")
    for step in record["steps"]:
        colour = {"completed": "green", "failed": "red", "timed_out": "red"}.get(step["status"])
        line = (f"  {step['seq']:>3} {step['step_name']:<24} #{step['attempt_count']} {step['status']:<10} "
                f"{step['duration_ms'] if step['duration_ms'] is not None else '-':>8} ms")
        if step["external_request_id"]:
            line += f"  req {step['external_request_id']}"
        click.secho(line, fg=colour)
        if step["error_message"]:
            click.secho(f"        {step['error_message']}", fg="red")
    click.echo("audit events:")
    for event in record["audit_events"]:
        click.echo(f"  {event['timestamp']}  {event['event_type']:<12} {json.dumps(event['metadata'])}")
    for line in record["logs"]:
        click.echo(f"  log {line['timestamp']} {line['level']}: {line['message']}")
