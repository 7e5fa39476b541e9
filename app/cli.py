"""The flowledger (alias: workflow) command line."""
from __future__ import annotations

import json
import sys

import click
import sqlalchemy as sa

from app.runtime import Runtime, load_settings, start
from services import db
from services.errors import FlowledgerError


def _runtime(*, migrate: bool) -> Runtime:
    return start(load_settings(), migrate=migrate)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """Flowledger: the flight recorder for workflow automations."""


@cli.command()
def serve() -> None:
    """Start the dashboard, ingestion API and scheduler (embedded PostgreSQL unless DATABASE_URL)."""
    from app import connection_budget
    from app.server import ensure_port_free
    from app.server import serve as run_server

    settings = load_settings()
    ensure_port_free(settings.host, settings.port)
    runtime = _runtime(migrate=True)
    try:
        connection_budget.ensure(runtime, lambda line: click.echo(line, err=True))
        where = "embedded PostgreSQL in " + str(settings.data_dir / "pgdata") if runtime.embedded \
            else "DATABASE_URL"
        public = f" (public URL {settings.public_url})" if settings.public_url else ""
        click.echo(f"flowledger: database ready ({where}); dashboard and API listening on "
                   f"{settings.listen_url}/{public}", err=True)
        from app.auth import check_serve_binding  # refuses a non-loopback bind while no user exists
        check_serve_binding(runtime, lambda line: click.echo(line, err=True))
        run_server(runtime)
    finally:
        runtime.close()
        click.echo("flowledger: stopped", err=True)


@cli.command()
def migrate() -> None:
    """Apply pending migrations (a no-op when the schema is current)."""
    runtime = _runtime(migrate=False)
    try:
        before, after = runtime.database.migrate()
    finally:
        runtime.close()
    if before == after:
        click.echo(f"schema already at {', '.join(sorted(after))}; nothing to do")
    else:
        click.echo(f"migrated from {', '.join(sorted(before)) or 'empty'} to {', '.join(sorted(after))}")


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of lines.")
def config(as_json: bool) -> None:
    """Print the effective settings, secrets redacted."""
    values = load_settings().redacted()
    if as_json:
        click.echo(json.dumps(values, indent=2, default=str))
        return
    width = max(len(k) for k in values)
    for key, value in values.items():
        click.echo(f"{key.ljust(width)}  {value}")


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.option("--storage", is_flag=True, help="Per-workflow storage by tier and its 30-day and steady-state forecast.")
def status(as_json: bool, storage: bool) -> None:
    """Database, schema version and row counts per ledger table."""
    import migrations

    runtime = _runtime(migrate=False)
    try:
        if storage:
            return _print_storage(runtime, as_json)
        with runtime.database.admin() as conn:
            report = {
                "database": "embedded " + str(runtime.embedded.pgdata) if runtime.embedded
                else str(runtime.database.admin_url.render_as_string(hide_password=True)),
                "server_version": conn.execute(sa.text("SHOW server_version")).scalar_one(),
                "schema_version": sorted(migrations.current(conn)),
                "schema_head": sorted(migrations.heads()),
                "rows": _row_counts(conn),
                "storage": __import__("app.cli_jobs", fromlist=["x"]).storage_status(conn),
            }
    finally:
        runtime.close()
    if as_json:
        click.echo(json.dumps(report, indent=2, default=str))
        return
    click.echo(f"database        {report['database']} (PostgreSQL {report['server_version']})")
    current = ", ".join(report["schema_version"]) or "not migrated"
    state = "current" if report["schema_version"] == report["schema_head"] else "run: flowledger migrate"
    click.echo(f"schema version  {current} ({state})")
    click.echo("rows per ledger table:")
    for table, count in report["rows"].items():
        click.echo(f"  {table.ljust(24)} {count if count is not None else '-':>12}")
    from app.cli_jobs import print_storage_status  # rows and bytes per tier, last run of each job

    print_storage_status(report["storage"])


def _print_storage(runtime: Runtime, as_json: bool) -> None:
    from datetime import UTC, datetime

    from services.forecast import storage_forecast

    with runtime.database.reader() as conn:
        rows = storage_forecast(conn, now=datetime.now(UTC), default_retention_days=runtime.settings.hot_days)
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo("no executions recorded yet")
        return
    click.echo(f"{'workflow':<28}{'exec/day':>10}{'B/exec':>10}{'hot':>10}{'objects':>10}{'archive':>10}"
               f"{'in 30 d':>10}{'steady':>10}")
    for r in rows:
        flag = "  ! bytes/execution jumped >3x" if r["jumped"] else ""
        click.echo(f"{r['workflow_id'][:27]:<28}{r['executions_per_day']:>10}{_size(r['bytes_per_execution']):>10}"
                   f"{_size(r['hot_bytes']):>10}{_size(r['object_bytes']):>10}{_size(r['archive_bytes']):>10}"
                   f"{_size(r['forecast_30d_bytes']):>10}{_size(r['steady_state_bytes'] or 0):>10}{flag}")


def _size(value: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if abs(value) < 1024:
            return f"{value:.0f}{unit}" if unit == "B" else f"{value:.1f}{unit}"
        value /= 1024
    return f"{value:.1f}TB"


def _row_counts(conn: sa.Connection) -> dict[str, int | None]:
    counts: dict[str, int | None] = {}
    for table in db.LEDGER_TABLES:
        exists = conn.execute(sa.text("SELECT to_regclass(:t)"), {"t": table}).scalar()
        counts[table] = conn.execute(sa.text(f'SELECT count(*) FROM "{table}"')).scalar_one() \
            if exists else None
    return counts


def register(group: click.Group) -> None:
    """Attach command groups defined in other modules."""
    for command in _extra_commands():
        group.add_command(command)


def _extra_commands() -> list[click.Command]:
    from app.cli_demo import demo_command
    from app.cli_execution import execution
    from app.cli_jobs import commands as job_commands
    from app.cli_replay import COMMANDS as replay_commands
    from app.cli_search import search_group
    from app.cli_security import security_commands

    return [*job_commands(), execution, demo_command, search_group, *security_commands(), *replay_commands]


register(cli)


def main() -> None:
    """Entry point: domain errors become one line on stderr and a non-zero exit."""
    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except FlowledgerError as exc:
        click.echo(f"flowledger: error: {exc}", err=True)
        for problem in getattr(exc, "problems", ()):  # every reason, not only how many there are
            if problem != str(exc):
                click.echo(f"  - {problem}", err=True)
        sys.exit(2)
    except SystemExit:
        raise
