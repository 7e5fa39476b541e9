"""Events: the event log with filters, and bulk replay with a dry-run count before anything is queued."""
from __future__ import annotations

import dash
from dash import Input, Output, State, callback, clientside_callback, ctx, dcc, html

from components import grids
from components.cards import empty_state
from pages.common import (
    EVENT_STATUSES,
    curl_example,
    field,
    has_route,
    href,
    panel_errors,
    parse_time,
    parse_uuid,
    unknown_choice,
)
from services import browse, db, replay

dash.register_page(__name__, path="/events", title="Events · Flowledger", name="Events",
                   grid=True)  # its grid bundle loads with the page (app/dashboard.py)
COLUMNS = ("event_id", "source_system", "event_type", "status", "received_at")


def layout(source: str | None = None, type: str | None = None, status: str | None = None,  # noqa: A002
           since: str | None = None, until: str | None = None, workflow: str | None = None, **_query) -> html.Div:
    with db.reader() as conn:
        workflows = browse.workflow_ids(conn)
        recorded = browse.ledger_has(conn, "events")
    selection = {"source_system": source, "event_type": type, "status": status, "since": since, "until": until,
                 "workflow_id": workflow}
    grid = grids.events_grid("events-grid", **{k: v for k, v in selection.items() if k != "workflow_id"})
    grid.getRowId = "params.data.event_id"
    return html.Div([
        dcc.Store(id="events-selection", data=selection), dcc.Store(id="events-replay-id"),
        html.Div([html.H1("Events"), html.Span(id="events-count", className="fl-muted")], className="fl-page-head"),
        None if recorded else empty_state(
            "No events received yet", "Send one: every POST to /api/v1/events/<source> is recorded byte for byte "
            "(add an Authorization: Bearer token if ingestion tokens are required). Or run flowledger demo.",
            code=curl_example()),
        html.Div([
            field("Source", _input("source", source, "crm")), field("Event type", _input("type", type, "deal.won")),
            field("Status", dcc.Dropdown(list(EVENT_STATUSES), status, id="events-status", placeholder="any")),
            field("Workflow (replay)", dcc.Dropdown(workflows, workflow, id="events-workflow", placeholder="any")),
            field("Received from (UTC)", _input("since", since, "2026-01-31T08:00")),
            field("to", _input("until", until, "2026-01-31T18:00")),
            html.Button("Apply", id="events-apply", n_clicks=0, className="fl-button fl-button--primary"),
            dcc.Link("Reset", href="/events", className="fl-button"),
        ], className="fl-toolbar fl-filters"),
        _bulk_replay(),
        grid,
        dcc.Location(id="events-nav", refresh="callback-nav"),
    ], id="events-page")


def _input(name: str, value: str | None, placeholder: str) -> dcc.Input:
    return dcc.Input(id=f"events-{name}", value=value or "", placeholder=placeholder, className="fl-input",
                     debounce=True)


def _bulk_replay() -> html.Details:
    can_queue = has_route("/api/v1/replays")
    return html.Details([
        html.Summary("Bulk replay the events matching these filters"),
        html.Div([
            field("Reason (recorded with the replay)", dcc.Input(id="events-replay-reason", className="fl-input",
                                                                  placeholder="payment provider outage fixed")),
            html.Button("Dry run", id="events-dry-run", n_clicks=0, className="fl-button"),
            html.Button("Replay these events", id="events-replay-confirm", n_clicks=0, disabled=True,
                        className="fl-button fl-button--danger",
                        title="Queue the replay" if can_queue else "The replay queue endpoint is not served here"),
        ], className="fl-toolbar"),
        dcc.Loading(html.Div(id="events-dry-run-result"), type="dot"),
        html.Div(id="events-replay-progress"),
        dcc.Interval(id="events-replay-poll", interval=1500, disabled=True),
    ], className="fl-panel fl-bulk", id="events-bulk", open=False)


@callback(Output("events-grid", "getRowsResponse"), Output("events-count", "children"),
          Input("events-grid", "getRowsRequest"), State("events-selection", "data"))
def update_events_grid(request, selection):
    # the page's own filters come from its store: the grid context can lag behind on the first request
    f = {**grids.to_filters(request, columns=COLUMNS), **{k: v for k, v in (selection or {}).items() if v}}
    unknown = unknown_choice("Status", "an event status", [f["status"]] if f.get("status") else [], EVENT_STATUSES)
    if unknown:  # the dropdown cannot show it: say so instead of an empty list
        return grids.rows_response([], 0), unknown
    try:
        with db.reader() as conn:
            page = browse.events_page(conn, offset=f["offset"], limit=f["limit"], sort=f["sort"],
                                      source_system=f.get("source_system") or None,
                                      event_type=f.get("event_type") or None, status=f.get("status") or None,
                                      since=parse_time(f.get("since")), until=parse_time(f.get("until")))
    except Exception as exc:  # the grid stays, the header says why it is empty
        return grids.rows_response([], 0), f"could not load events: {exc}"
    count = page["count"]
    text = dash.no_update if count is None else f"{'10,000+' if page['capped'] else f'{count:,}'} events"
    return grids.rows_response(page["rows"], page["total"]), text


@callback(Output("events-nav", "href"), Input("events-apply", "n_clicks"), Input("events-grid", "cellClicked"),
          State("events-source", "value"), State("events-type", "value"), State("events-status", "value"),
          State("events-workflow", "value"), State("events-since", "value"), State("events-until", "value"),
          prevent_initial_call=True)
def update_events_nav(_apply, cell, source, type_, status, workflow, since, until):
    if ctx.triggered_id == "events-grid":
        return f"/events/{cell['rowId']}" if (cell or {}).get("rowId") else dash.no_update
    return href("/events", source=source, type=type_, status=status, workflow=workflow, since=since, until=until)


@callback(Output("events-dry-run-result", "children"), Output("events-replay-confirm", "disabled"),
          Input("events-dry-run", "n_clicks"), State("events-selection", "data"), prevent_initial_call=True)
@panel_errors(count=2)
def update_events_dry_run(_n, selection):
    chosen = replay.parse_selection({k: (parse_time(v) if k in ("since", "until") else v)
                                     for k, v in (selection or {}).items() if v})
    with db.reader() as conn:
        plan = replay.plan(conn, chosen)
    lines = [html.Li(f"{w['workflow_id']} v{w['version']}: {w['events']} events; " + ", ".join(
        f"{s['name']} {'re-runs' if s['rerun'] else 'skipped'} {s['rerun'] or s['skipped']}"
        + (" (side effect)" if s["side_effect"] and s["rerun"] else "") for s in w["steps"]))
        for w in plan["workflows"]]
    count = html.Strong(f"Dry run: {plan['count']:,} events would be replayed", id="events-dry-run-count")
    return html.Div([count, html.Ul(lines)], className="fl-banner"), plan["count"] == 0 or not has_route(
        "/api/v1/replays")


clientside_callback(
    """
    function(n, selection, reason) {
        if (!n) { return window.dash_clientside.no_update; }
        var chosen = {};
        Object.keys(selection || {}).forEach(function(k) { if (selection[k]) { chosen[k] = selection[k]; } });
        return window.flowledgerApi('POST', '/api/v1/replays', {selection: chosen, dry_run: false,
                                                                 reason: reason || '', requested_by: 'dashboard'})
          .then(function(r) { return r.ok ? r.body.replay_id : 'error:' + window.flowledgerApiReason(r); });
    }
    """,
    Output("events-replay-id", "data"), Input("events-replay-confirm", "n_clicks"),
    State("events-selection", "data"), State("events-replay-reason", "value"), prevent_initial_call=True)


@callback(Output("events-replay-progress", "children"), Output("events-replay-poll", "disabled"),
          Input("events-replay-id", "data"), Input("events-replay-poll", "n_intervals"), prevent_initial_call=True)
@panel_errors(count=2)
def update_events_replay_progress(replay_id, _tick):
    key = parse_uuid(replay_id)
    if key is None:
        return html.Div(f"Replay was not queued: {str(replay_id).removeprefix('error:')}", className="fl-error"), True
    with db.reader() as conn:
        state = replay.get_replay(conn, key)
    p = state["progress"]
    done = p["done"] + p["failed"]
    bar = html.Progress(value=str(done), max=str(max(state["total"], 1)), className="fl-progress")
    text = f"replay {key}: {done:,}/{state['total']:,} processed · {p['queued']:,} queued · {p['failed']:,} failed"
    return html.Div([bar, html.Span(text)], className="fl-banner"), state["finished"]
