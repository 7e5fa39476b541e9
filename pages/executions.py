"""Executions: search and filter every run; filters live in the URL so a link can be shared."""
from __future__ import annotations

from datetime import datetime

import dash
from dash import Input, Output, State, callback, ctx, dcc, html

from components import grids
from components.cards import empty_state, highlighted
from pages.common import (
    STATUSES,
    TRIGGERS,
    curl_example,
    field,
    href,
    panel_errors,
    parse_payload,
    parse_time,
    unknown_choice,
)
from services import browse, db

try:  # free text over step payloads (issue 7); the box is left out when the module is absent
    from services import search as text_search
except ImportError:  # pragma: no cover - depends on another module being installed
    text_search = None

dash.register_page(__name__, path="/executions", title="Executions · Flowledger", name="Executions",
                   grid=True)  # its grid bundle loads with the page (app/dashboard.py)
COLUMNS = ("execution_id", "workflow_id", "status", "trigger_source", "started_at", "completed_at", "duration_ms")
TIME_FILTERS = {"since": "Started from", "until": "Started to", "finished_since": "Finished from",
                "finished_until": "Finished to"}


def layout(workflow: str | None = None, status: str | None = None, trigger: str | None = None,
           since: str | None = None, until: str | None = None, finished_since: str | None = None,
           finished_until: str | None = None, payload: str | None = None, q: str | None = None,
           **_query) -> html.Div:
    with db.reader() as conn:
        workflows = browse.workflow_ids(conn)
        recorded = browse.ledger_has(conn, "executions")
    filters = {"workflow_id": workflow, "status": status, "trigger_source": trigger, "since": since,
               "until": until, "finished_since": finished_since, "finished_until": finished_until, "payload": payload}
    times = {"since": since, "until": until, "finished_since": finished_since, "finished_until": finished_until}
    return html.Div([
        html.Div([html.H1("Executions"), html.Span(id="executions-count", className="fl-muted")],
                 className="fl-page-head"),
        None if recorded else empty_state(
            "No executions recorded yet",
            "Executions appear here when a workflow runs: send an event to a workflow's source, report runs from "
            "your engine with POST /api/v1/executions, or fill a demo ledger with flowledger demo.",
            code=curl_example()),
        _filters(workflows, workflow, _statuses(status), trigger, times, payload, q),
        html.Div(id="executions-text-hits", children=_text_hits(q, workflow, _statuses(status)) if q else None),
        _grid(filters), dcc.Store(id="executions-filters", data=filters),
        dcc.Location(id="executions-nav", refresh="callback-nav"),
    ], id="executions-page")


def _grid(filters: dict) -> object:
    grid = grids.executions_grid("executions-grid", **filters)
    # row ids are execution ids, so a click on any cell knows which timeline to open
    grid.getRowId = "params.data.execution_id"
    return grid


def _statuses(value: str | list[str] | None) -> list[str] | None:
    """One status or several, from the URL (`failed,timed_out`) or the multi-select."""
    parts = value.split(",") if isinstance(value, str) else value or []
    return [part.strip() for part in parts if part and part.strip()] or None


def _unknown(statuses: list[str] | None, trigger: str | None) -> str | None:
    """What in the URL names no status or trigger the filters know, as a message; None when all is known."""
    return (unknown_choice("Status", "a status", statuses or [], STATUSES)
            or unknown_choice("Trigger", "a trigger", [trigger] if trigger else [], TRIGGERS))


def _time(key: str, value: str | None) -> datetime | None:
    """A filter time, None when blank; a malformed one raises with the box it came from."""
    moment = parse_time(value)
    if moment is None and value and value.strip():
        raise ValueError(f"{TIME_FILTERS[key]} (UTC): “{value}” is not a time; write it like 2026-01-31T08:00")
    return moment


def _dropdown(name: str, options, value, placeholder: str, *, multi: bool = False) -> dcc.Dropdown:
    return dcc.Dropdown(list(options), value or None, placeholder=placeholder, id=f"executions-{name}",
                        className="fl-dropdown", clearable=True, multi=multi)


def _input(name: str, value: str | None, placeholder: str) -> dcc.Input:
    return dcc.Input(id=f"executions-{name}", value=value or "", placeholder=placeholder, className="fl-input",
                     debounce=True, n_submit=0)


def _filters(workflows, workflow, statuses, trigger, times: dict, payload, q) -> html.Div:
    """Filter controls; Apply (or Enter) navigates to the URL holding them, so the view can be shared."""
    controls = [
        field("Workflow", _dropdown("workflow", workflows, workflow, "any workflow")),
        field("Status", _dropdown("status", STATUSES, statuses, "any status", multi=True)),
        field("Trigger", _dropdown("trigger", TRIGGERS, trigger, "any trigger")),
        field("Started from (UTC)", _input("since", times["since"], "2026-01-31T08:00")),
        field("to", _input("until", times["until"], "2026-01-31T18:00")),
        field("Finished from (UTC)", _input("finished-since", times["finished_since"], "2026-01-31T08:00")),
        field("to", _input("finished-until", times["finished_until"], "2026-01-31T18:00")),
        field("Payload field", _input("payload", payload, "customer.id = C-123"), grow=True),
    ]
    free_text = field("Free text", _input("q", q, "INV-2026-04817 or an error"), grow=True)
    controls.append(free_text if text_search is not None else html.Div(free_text, hidden=True))
    controls += [html.Button("Apply", className="fl-button fl-button--primary", id="executions-apply", n_clicks=0),
                 dcc.Link("Reset", href="/executions", className="fl-button")]
    return html.Div(controls, className="fl-toolbar fl-filters")


@panel_errors()
def _text_hits(q: str, workflow: str | None, statuses: list[str] | None) -> html.Div:
    with db.reader() as conn:
        found = text_search.search(conn, q=q, workflow_id=workflow or None, status=statuses, limit=20)
    if not found["items"]:
        return html.Div(f"No step payload or error text matches “{q}”.", className="fl-banner")
    rows = [html.Li([dcc.Link(f"{hit['workflow_id']} · {hit['step_name']} #{hit['attempt']}", href=hit["link"]),
                     html.Span(f" {hit['status']} ", className="fl-muted"),
                     html.Span(highlighted(hit["snippet"]), className="fl-snippet")]) for hit in found["items"]]
    # a sampled answer says so (and how to narrow it): these are not all the steps that match
    note = html.Div(found["note"], className="fl-muted fl-hits-note") if found.get("note") else None
    return html.Div([html.Strong(f"Steps whose text matches “{q}” ({len(rows)} best):"), note, html.Ul(rows)],
                    className="fl-panel fl-hits")


@callback(Output("executions-grid", "getRowsResponse"), Output("executions-count", "children"),
          Input("executions-grid", "getRowsRequest"), State("executions-filters", "data"))
def update_executions_grid(request, page_filters=None):
    # the page's own filters come from its store: the grid context can lag behind on the first request
    filters = {**grids.to_filters(request, columns=COLUMNS), **{k: v for k, v in (page_filters or {}).items() if v}}
    try:
        times = {key: _time(key, filters.get(key)) for key in TIME_FILTERS}
    except ValueError as exc:  # a mistyped time must not quietly widen the list to every run
        return grids.rows_response([], 0), str(exc)
    unknown = _unknown(_statuses(filters.get("status")), filters.get("trigger_source"))
    if unknown:  # a status the dropdown cannot show would filter invisibly: say so instead of "no executions"
        return grids.rows_response([], 0), unknown
    try:
        with db.reader() as conn:
            page = browse.executions_page(
                conn, offset=filters["offset"], limit=filters["limit"], sort=filters["sort"],
                workflow_id=filters.get("workflow_id") or None, status=_statuses(filters.get("status")),
                trigger_source=filters.get("trigger_source") or None, **times,
                payload=parse_payload(filters.get("payload")))
    except Exception as exc:  # keep the grid alive: an empty page and the reason in the header
        return grids.rows_response([], 0), f"could not load executions: {exc}"
    count = page["count"]
    text = None if count is None else ("no executions match" if count == 0 else
                                      f"{'10,000+' if page['capped'] else f'{count:,}'} executions")
    return grids.rows_response(page["rows"], page["total"]), text if text is not None else dash.no_update


@callback(Output("executions-nav", "href"), Input("executions-apply", "n_clicks"),
          Input("executions-payload", "n_submit"), Input("executions-q", "n_submit"),
          Input("executions-grid", "cellClicked"),
          State("executions-workflow", "value"), State("executions-status", "value"),
          State("executions-trigger", "value"), State("executions-since", "value"),
          State("executions-until", "value"), State("executions-finished-since", "value"),
          State("executions-finished-until", "value"), State("executions-payload", "value"),
          State("executions-q", "value"), prevent_initial_call=True)
def update_executions_nav(_apply, _submit, _q_submit, cell, workflow, status, trigger, since, until,
                          finished_since, finished_until, payload, q):
    if ctx.triggered_id == "executions-grid":
        key = (cell or {}).get("rowId")
        return f"/executions/{key}" if key else dash.no_update
    return href("/executions", workflow=workflow, status=",".join(_statuses(status) or []), trigger=trigger,
                since=since, until=until, finished_since=finished_since, finished_until=finished_until,
                payload=payload, q=q)
