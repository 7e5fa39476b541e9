"""Execution: the Gantt timeline of one run, the failing step first, then each step's payloads and the audit."""
from __future__ import annotations

import dash
from dash import ALL, MATCH, Input, Output, State, callback, clientside_callback, ctx, dcc, html

from components import figures
from components.cards import empty_state, error_state, json_block, status_badge
from components.format import format_bytes, format_duration
from pages.common import REPLAY_JS, iso, panel_errors, parse_uuid, payload_config, replay_route
from services import db, timeline
from services.errors import NotFound

dash.register_page(__name__, path_template="/executions/<execution_id>", title="Execution · Flowledger",
                   name="Execution")
GRAPH_CONFIG = {"displaylogo": False, "scrollZoom": True, "modeBarButtonsToRemove": ["select2d", "lasso2d"]}


def layout(execution_id: str | None = None, step: str | None = None, **_query) -> html.Div:
    if parse_uuid(execution_id) is None:
        return empty_state("Not an execution id", "Open an execution from the Executions page.")
    replay = html.Span([
        html.Button("Replay event", id="execution-replay-button", n_clicks=0, className="fl-button",
                    disabled=not replay_route(),
                    title="Resubmit the stored event; steps that already succeeded are skipped"
                    if replay_route() else "Replay is not available in this server (no replay endpoint)"),
        html.Span(id="execution-replay-result", className="fl-muted")], id="execution-replay-box")
    return html.Div([
        dcc.Store(id="execution-id", data=execution_id), dcc.Store(id="execution-event-id"),
        dcc.Store(id="execution-window"), dcc.Store(id="execution-meta"), dcc.Store(id="execution-bars"),
        dcc.Store(id="execution-step-wanted", data=step),
        dcc.Loading(html.Div(id="execution-header"), type="dot"),
        replay,
        html.Div([html.Button("◀ earlier steps", id="execution-prev", n_clicks=0, className="fl-button"),
                  html.Span(id="execution-window-text", className="fl-muted"),
                  html.Button("later steps ▶", id="execution-next", n_clicks=0, className="fl-button")],
                 id="execution-pager", className="fl-toolbar", hidden=True),
        dcc.Loading(html.Div(dcc.Graph(id="execution-timeline", config=GRAPH_CONFIG), className="fl-timeline-frame"),
                    type="dot"),
        html.Div([html.H2("Step details"), dcc.Dropdown(id="execution-step", clearable=False,
                                                        placeholder="choose a step or click a bar")],
                 className="fl-section"),
        dcc.Loading(html.Div(id="execution-step-detail"), type="dot"),
        html.Div(id="execution-replay-compare"),
        dcc.Loading(html.Div(id="execution-audit"), type="dot"),
        _delete_box(),
    ], id="execution-page")


def _delete_box() -> html.Details:
    """Force-delete, kept out of the way: admins holding executions.force-delete only; audit events stay."""
    return html.Details([
        html.Summary("Delete this execution…"),
        html.P("Removes the execution, its steps and payloads for good (the audit trail stays). Only admins "
               "with the executions.force-delete permission may; workflows under legal hold refuse it.",
               className="fl-muted"),
        html.Div([dcc.Input(id="execution-delete-reason", placeholder="reason (required, recorded)",
                            className="fl-input"),
                  html.Button("Delete for good", id="execution-delete-button", n_clicks=0,
                              className="fl-button fl-button--danger"),
                  html.Span(id="execution-delete-result", className="fl-muted")], className="fl-toolbar"),
    ], className="fl-section", id="execution-delete-box")


clientside_callback(
    """
    function(n, executionId, reason) {
        if (!n) { return window.dash_clientside.no_update; }
        if (!reason) { return 'A reason is required.'; }
        return fetch('/api/v1/executions/' + executionId, {method: 'DELETE', credentials: 'same-origin',
            headers: {'Content-Type': 'application/json', 'Accept': 'application/json',
            'X-CSRFToken': decodeURIComponent((document.cookie.match(/(?:^|; )_csrf_token=([^;]*)/) || [])[1] || '')},
            body: JSON.stringify({reason: reason})})
          .then(function(r) { return r.json().catch(function() { return {}; }).then(function(b) {
              return r.ok ? 'Deleted; the audit trail keeps a DELETED event.' :
                  'Refused (' + r.status + '): ' + (b.detail || b.title || ''); }); });
    }
    """,
    Output("execution-delete-result", "children"), Input("execution-delete-button", "n_clicks"),
    State("execution-id", "data"), State("execution-delete-reason", "value"), prevent_initial_call=True)


@callback(Output("execution-header", "children"), Output("execution-meta", "data"),
          Output("execution-event-id", "data"), Output("execution-window", "data"), Input("execution-id", "data"))
@panel_errors(count=4)
def update_execution_header(execution_id: str):
    with db.reader() as conn:
        record = timeline.execution(conn, parse_uuid(execution_id))
    meta = {"steps": record["step_count"], "start": timeline.window_start(record), "workflow": record["workflow_id"],
            "started_at": record["started_at"].isoformat() if record["started_at"] else None,
            "failing": str(record["failures"][-1]["step_id"]) if record["failures"] else None}
    # The first window comes with the header, so the timeline is one round trip after the page, not two.
    return _header(record), meta, str(record["event_id"]) if record["event_id"] else None, meta["start"]


def _header(r: dict) -> html.Div:
    facts = [("Started", iso(r["started_at"])), ("Finished", iso(r["completed_at"])),
             ("Duration", format_duration(r["duration_ms"])), ("Trigger", r["trigger_source"]),
             ("Version", r["workflow_version"]), ("Engine", r["engine"]),
             ("Steps", f"{r['step_count']:,} ({r['attempt_count']:,} attempts)"),
             ("Event", dcc.Link(str(r["event_id"]), href=f"/events/{r['event_id']}") if r["event_id"] else "—"),
             ("Trace id", html.Code(r["trace_id"])), ("traceparent", html.Code(r["traceparent"]))]
    if r["replay_of"]:
        facts.append(("Replay of", dcc.Link(str(r["replay_of"]), href=f"/executions/{r['replay_of']}")))
    for replay in r["replays"]:
        facts.append(("Replayed as", dcc.Link(f"{replay['execution_id']} ({replay['status']})",
                                              href=f"/executions/{replay['execution_id']}")))
    return html.Div([
        html.Div([html.H1(r["workflow_id"]), status_badge(r["status"]),
                  html.Span(str(r["execution_id"]), className="fl-muted fl-mono")], className="fl-page-head"),
        _failure_callout(r),
        html.Dl([item for label, value in facts for item in (html.Dt(label), html.Dd(value))], className="fl-facts"),
    ])


def _failure_callout(r: dict) -> html.Div | None:
    """The failing step named in words above the chart, so nobody has to hunt for the red bar."""
    if not r["failures"]:
        if r["status"] in ("failed", "timed_out"):
            return html.Div(f"✖ {r['status'].replace('_', ' ')}: {r['error_message'] or 'no error recorded'}",
                            className="fl-banner fl-banner--bad", role="alert")
        return None
    items = []
    for f in r["failures"][:3]:
        extra = [f"HTTP {f['response_status']}" if f["response_status"] else None,
                 f"request {f['external_request_id']}" if f["external_request_id"] else None]
        tries = f" after {f['attempt']} attempts" if f["attempt"] > 1 else ""
        items.append(html.Div([
            html.Strong(f"✖ Step {f['seq']} · {f['step_name']} {f['status'].replace('_', ' ')}{tries}: "),
            html.Span(f["error_message"] or "no error message", className="fl-error-text"),
            html.Span(" · " + " · ".join(e for e in extra if e) if any(extra) else "", className="fl-muted"),
            html.Button("show step", id={"type": "execution-goto", "step": str(f["step_id"])}, n_clicks=0,
                        className="fl-link-button")]))
    more = len(r["failures"]) - 3
    if more > 0:
        items.append(html.Div(f"…and {more} more failing steps (red bars below)", className="fl-muted"))
    return html.Div(items, className="fl-banner fl-banner--bad", role="alert", id="execution-failure")


@callback(Output("execution-window", "data", allow_duplicate=True), Input("execution-prev", "n_clicks"),
          Input("execution-next", "n_clicks"), State("execution-meta", "data"), State("execution-window", "data"),
          prevent_initial_call=True)
def update_execution_window(_prev, _next, meta, current):
    if not meta:
        return dash.no_update
    if current is None:
        return meta["start"]
    step = timeline.WINDOW if ctx.triggered_id == "execution-next" else -timeline.WINDOW
    return min(max(current + step, 0), max(meta["steps"] - 1, 0))


@callback(Output("execution-timeline", "figure"), Output("execution-step", "options"),
          Output("execution-pager", "hidden"), Output("execution-window-text", "children"),
          Output("execution-bars", "data"),
          Input("execution-window", "data"), State("execution-id", "data"), State("execution-meta", "data"))
def update_execution_timeline(offset, execution_id, meta):
    if offset is None or not meta:
        return dash.no_update, dash.no_update, True, "", dash.no_update
    try:
        with db.reader() as conn:
            steps = timeline.steps(conn, parse_uuid(execution_id), offset=offset)
            p95 = timeline.p95_by_step(conn, workflow_id=meta["workflow"], before=meta["started_at"])
    except Exception as exc:  # the figure area says what went wrong; the header stays
        return {}, [], False, f"timeline could not be loaded: {exc}", {}
    options = [{"label": f"{row.seq} · {row.step_name} · attempt {row.attempt} · {row.status}",
                "value": str(row.step_id)} for row in steps.itertuples()]
    last = offset + steps["seq"].nunique() if not steps.empty else offset
    text = f"steps {offset + 1:,}–{last:,} of {meta['steps']:,}"
    # Every attempt is its own row in the ledger; the chart groups attempts of one step on one row by seq.
    bars = {f"{row.seq}:{row.attempt}": str(row.step_id) for row in steps.itertuples()}
    chart = steps.assign(step_id=steps["seq"].astype(str)) if not steps.empty else steps
    figure = figures.execution_timeline(chart, p95_by_step=p95, height_per_row=30)
    return figure, options, meta["steps"] <= timeline.WINDOW, text, bars


@callback(Output("execution-step", "value"), Input("execution-step", "options"),
          Input("execution-timeline", "clickData"), Input({"type": "execution-goto", "step": ALL}, "n_clicks"),
          State("execution-meta", "data"), State("execution-step-wanted", "data"), State("execution-step", "value"),
          State("execution-bars", "data"))
def update_execution_step(options, click, _goto, meta, wanted, current, bars):
    values = {o["value"] for o in options or []}
    if ctx.triggered_id == "execution-timeline" and click:
        seq, _, attempt = str(click["points"][0].get("id", "")).partition(":")
        picked = (bars or {}).get(f"{seq}:{attempt.split(':')[0]}")
        return picked if picked in values else dash.no_update
    if isinstance(ctx.triggered_id, dict) and any(_goto):
        return ctx.triggered_id["step"]
    for choice in (current, wanted, (meta or {}).get("failing")):
        if choice in values:
            return choice
    return options[0]["value"] if options else None


@callback(Output("execution-step-detail", "children"), Input("execution-step", "value"),
          State("execution-id", "data"))
@panel_errors()
def update_execution_step_detail(step_id, execution_id):
    if not step_id:
        return None
    with db.reader() as conn:
        s = timeline.step(conn, payload_config(), execution_id=parse_uuid(execution_id), step_id=parse_uuid(step_id),
                          include_payloads=False)
    facts = [("Status", status_badge(s["status"])), ("Attempt", s["attempt"]), ("Type", s["step_type"]),
             ("Started", iso(s["started_at"])), ("Duration", format_duration(s["duration_ms"])),
             ("Waited before", format_duration(s["wait_ms"]) if s["wait_ms"] else "—"),
             ("HTTP status", s["response_status"] or "—"),
             ("external_request_id", html.Code(s["external_request_id"] or "—")),
             ("Span", html.Code(f"{s['span_id']} (parent {s['parent_span_id'] or '—'})")),
             ("Idempotency key", html.Code(s["idempotency_key"] or "—"))]
    if s["reused_from_execution"]:
        facts.append(("Output reused from", dcc.Link(str(s["reused_from_execution"]),
                                                     href=f"/executions/{s['reused_from_execution']}")))
    body = [html.H3(f"{s['seq']} · {s['step_name']}"),
            html.Dl([i for label, value in facts for i in (html.Dt(label), html.Dd(value))], className="fl-facts")]
    if s["error_message"]:
        body.append(html.Pre(s["error_message"], className="fl-error-pre"))
    body.append(html.Div([_payload(s, "input"), _payload(s, "output")], className="fl-grid-2"))
    return html.Div(body, className="fl-panel", id="execution-step-panel")


def _payload(s: dict, kind: str) -> html.Div:
    """A payload panel: small ones load at once, large or offloaded ones on request."""
    meta = s[f"{kind}_meta"]
    title = html.H4(kind.capitalize())
    if meta is None:
        return html.Div([title, html.Span("no payload recorded", className="fl-muted")])
    where = f" · offloaded to {meta['uri']}" if meta["uri"] else ""
    info = html.Div(f"{format_bytes(meta['size_bytes'])} ({format_bytes(meta['stored_bytes'])} stored, "
                    f"{meta['codec']}){where} · sha256 {meta['sha256'][:16]}…", className="fl-muted")
    key = {"type": "execution-payload", "kind": kind, "step": str(s["step_id"])}
    if meta["uri"] or meta["size_bytes"] > timeline.INLINE_PREVIEW_BYTES:
        button = html.Button(f"Load {kind} ({format_bytes(meta['size_bytes'])})", n_clicks=0, className="fl-button",
                             id={**key, "type": "execution-payload-load"})
        return html.Div([title, info, html.Div(button, id=key)])
    return html.Div([title, info, html.Div(_load(s["execution_id"], meta["payload_id"]), id=key)])


def _load(execution_id, payload_id) -> html.Div:
    from services import payloads

    with db.reader() as conn:
        return json_block(payloads.load(conn, payload_config(), payload_id))


@callback(Output({"type": "execution-payload", "kind": MATCH, "step": MATCH}, "children"),
          Input({"type": "execution-payload-load", "kind": MATCH, "step": MATCH}, "n_clicks"),
          State("execution-id", "data"), prevent_initial_call=True)
@panel_errors()
def update_execution_payload(_n, execution_id):
    with db.reader() as conn:
        s = timeline.step(conn, payload_config(), execution_id=parse_uuid(execution_id),
                          step_id=parse_uuid(ctx.triggered_id["step"]), include_payloads=False)
    meta = s[f"{ctx.triggered_id['kind']}_meta"]
    return _load(execution_id, meta["payload_id"]) if meta else None


@callback(Output("execution-replay-compare", "children"), Input("execution-id", "data"))
@panel_errors()
def update_execution_replay_compare(execution_id):
    with db.reader() as conn:
        pair = timeline.replay_pair(conn, parse_uuid(execution_id))
    if pair is None:
        return None
    return html.Div([html.H2("Compared with the original run"), figures.replay_comparison(*pair)],
                    className="fl-section fl-panel")


@callback(Output("execution-audit", "children"), Input("execution-id", "data"))
@panel_errors()
def update_execution_audit(execution_id):
    try:
        with db.reader() as conn:
            found = timeline.audit_and_logs(conn, parse_uuid(execution_id))
    except NotFound as exc:
        return error_state(str(exc))
    audit = html.Table([html.Thead(html.Tr([html.Th("at"), html.Th("event"), html.Th("detail")])),
                        html.Tbody([html.Tr([html.Td(iso(a["timestamp"])), html.Td(a["event_type"]),
                                             html.Td(html.Code(_compact(a["metadata"])))])
                                    for a in found["audit_events"]])], className="fl-table")
    logs = html.Table([html.Thead(html.Tr([html.Th("at"), html.Th("level"), html.Th("message")])),
                       html.Tbody([html.Tr([html.Td(iso(line["timestamp"])), html.Td(line["level"]),
                                            html.Td(line["message"])],
                                           className=f"fl-log fl-log--{line['level']}") for line in found["logs"]])],
                      className="fl-table")
    return html.Div([html.Div([html.H2("Audit events"), audit], className="fl-panel"),
                     html.Div([html.H2("Log lines"), logs], className="fl-panel")], className="fl-grid-2")


def _compact(metadata) -> str:
    return ", ".join(f"{k}={v}" for k, v in (metadata or {}).items() if v not in (None, ""))


clientside_callback(REPLAY_JS, Output("execution-replay-result", "children"),
                    Input("execution-replay-button", "n_clicks"), State("execution-event-id", "data"),
                    prevent_initial_call=True)
