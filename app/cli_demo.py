"""`flowledger demo`: fill the ledger with 30 days of realistic history to explore the dashboard."""
from __future__ import annotations

import click

from app.runtime import load_settings, start
from services import demo


@click.command("demo")
@click.option("--executions", "-n", default=3000, show_default=True, type=click.IntRange(20, 1_000_000),
              help="How many executions to record.")
@click.option("--days", default=30, show_default=True, type=click.IntRange(1, 365), help="Days of history.")
@click.option("--seed", default=7, show_default=True, type=int, help="Random seed (same seed, same story).")
def demo_command(executions: int, days: int, seed: int) -> None:
    """Record demo workflows (CRM deal.won → invoice → email, order sync, nightly report) with failures."""
    settings = load_settings()
    runtime = start(settings, migrate=True)
    try:
        with click.progressbar(length=executions, label="recording demo history", file=None) as bar:
            result = demo.fill(runtime.database.writer, runtime.payloads, executions=executions, days=days,
                               seed=seed, on_progress=bar.update)
    finally:
        runtime.close()
    span = "1 day" if days == 1 else f"{days} days"
    click.echo(f"recorded {result.executions} executions ({result.failed} failed) over {span} for "
               f"{', '.join(result.workflows)}; {result.events} webhook events, {result.dead_lettered} dead-lettered")
    click.echo(f"failure spike: {result.spike_hour:%Y-%m-%d %H:00} UTC (order-sync, pay.example.com 503)")
    click.echo(f"open the dashboard: flowledger serve, then {settings.dashboard_url}/")
