"""`flowledger search`: query, reindex OpenSearch with a progress bar, drain the outbox once, switch it."""
from __future__ import annotations

import difflib
import json

import click

from app import api_search
from app.api_common import parse_timestamp
from app.runtime import Runtime, load_settings, start
from components.format import snippet_parts
from services import opensearch, search
from services.errors import ConfigurationError


def _index(runtime: Runtime) -> opensearch.OpenSearchIndex:
    index = api_search.opensearch_index(runtime)
    if index is None:
        raise ConfigurationError("FLOWLEDGER_OPENSEARCH_URL is not set (PostgreSQL full-text search needs no index "
                                 "rebuild)")
    return index


class _QueryByDefault(click.Group):
    """`flowledger search TEXT` is `flowledger search query TEXT`: what a newcomer types first."""

    def resolve_command(self, ctx: click.Context,
                        args: list[str]) -> tuple[str | None, click.Command | None, list[str]]:
        if args and args[0] not in self.commands and not args[0].startswith("-"):
            # A mistyped subcommand (`reindx`) still runs as a search, but says what was probably meant.
            near = difflib.get_close_matches(args[0], [c for c in self.commands if c != "query"], n=1, cutoff=0.75)
            if near:
                click.echo(f"searching for “{args[0]}”; did you mean `flowledger search {near[0]}`?", err=True)
            return super().resolve_command(ctx, ["query", *args])
        return super().resolve_command(ctx, args)


@click.group("search", cls=_QueryByDefault)
def search_group() -> None:
    """Free-text search over step payloads and the OpenSearch index.

    `flowledger search TEXT [OPTIONS]` is short for `flowledger search query TEXT [OPTIONS]`.
    """


@search_group.command("query")
@click.argument("q")
@click.option("--workflow-id", help="Only this workflow.")
@click.option("--status", help="Only executions with this status.")
@click.option("--since", help="ISO 8601 lower bound (inclusive) on when the step was recorded.")
@click.option("--until", help="ISO 8601 upper bound (exclusive).")
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1, 100))
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of lines.")
def query_command(q: str, workflow_id: str | None, status: str | None, since: str | None, until: str | None,
                  limit: int, as_json: bool) -> None:
    """Search step inputs, outputs and errors (PostgreSQL full-text; the API uses OpenSearch when set)."""
    runtime = start(load_settings(), migrate=False)
    try:
        with runtime.database.reader() as conn:
            page = search.search(conn, q=q, workflow_id=workflow_id, status=status,
                                 since=parse_timestamp(since, "--since"), until=parse_timestamp(until, "--until"),
                                 limit=limit)
    finally:
        runtime.close()
    if as_json:
        click.echo(json.dumps(page, indent=2, default=str))
        return
    if not page["items"]:
        click.echo("no matches")
    base = runtime.settings.dashboard_url  # links a terminal can open: the public URL, else where serve listens
    for hit in page["items"]:
        where = " [archived]" if hit["archived"] else ""
        click.echo(f"{hit['workflow_id']}  {hit['status']}  {hit['step_name']}  {base}{hit['link']}{where}")
        click.echo(f"    {_terminal(hit['snippet'])}")


def _terminal(snippet: str) -> str:
    """A snippet for a terminal: one line (the text's values joined by ·), matches bold and underlined."""
    return "".join(click.style(text, bold=True, underline=True) if match else text
                   for text, match in snippet_parts(snippet)).replace("\n", " · ")


@search_group.command("reindex")
@click.option("--since", help="Only steps recorded at or after this ISO 8601 time (default: everything).")
def reindex_command(since: str | None) -> None:
    """Send every step to OpenSearch again (documents are overwritten by step id)."""
    moment = parse_timestamp(since, "--since")
    runtime = start(load_settings(), migrate=False)
    try:
        index = _index(runtime)
        with click.progressbar(length=1, label="reindexing steps", show_pos=True) as bar:
            def progress(sent: int, total: int) -> None:
                bar.length = max(total, 1)
                bar.update(sent - bar.pos)

            sent = opensearch.reindex(runtime.database, index, since=moment, progress=progress)
    finally:
        runtime.close()
    click.echo(f"reindexed {sent} steps into {index.pattern}")


@search_group.command("index-pending")
def index_pending_command() -> None:
    """Run the outbox indexer once (what the scheduler does every few seconds)."""
    runtime = start(load_settings(), migrate=False)
    try:
        _index(runtime)
        run = api_search.index_pending(runtime)
    finally:
        runtime.close()
    if run.busy:
        click.echo("another process is indexing the outbox right now")
    elif run.held_back:
        click.echo("a transaction that may still add outbox rows is open; try again shortly")
    else:
        click.echo(f"sent {run.sent} steps in {run.batches} batches; outbox position {run.last_id}")
    if run.error:
        raise click.ClickException(f"stopped early, nothing lost: {run.error}")


@search_group.command("outbox")
@click.argument("state", type=click.Choice(["on", "off", "show"]))
def outbox_command(state: str) -> None:
    """Show or switch whether steps are written to the OpenSearch outbox."""
    runtime = start(load_settings(), migrate=False)
    try:
        with runtime.database.writer() as conn:
            if state != "show":
                opensearch.set_outbox(conn, enabled=state == "on", reason="flowledger search outbox " + state)
            enabled = opensearch.outbox_enabled(conn)
    finally:
        runtime.close()
    click.echo(f"search outbox is {'on' if enabled else 'off'}")
