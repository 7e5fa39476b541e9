"""Execution: the Gantt timeline of one run, the failing step first, then each step's payloads and the audit."""
from __future__ import annotations

import logging
from typing import Any
from uuid import UUID

import dash
from dash import ALL, MATCH, Input, Output, Patch, State, callback, clientside_callback, ctx, dcc, html

from components import execution_panels, figures, timeline_minimap
from components.cards import empty_state, error_state, json_block
from components.execution_panels import step_key
from pages.common import REPLAY_JS, panel_errors, parse_uuid, payload_config, replay_route
from services import db, payloads, timeline
from services.errors import FlowledgerError, NotFound

log = logging.getLogger(__name__)

dash.register_page(__name__, path_template="/executions/<execution_id>", title="Execution · Flowledger",
                   name="Execution")
GRAPH_CONFIG = {"displaylogo": False, "scrollZoom": True, "modeBarButtonsToRemove": ["select2d", "lasso2d"]}
MINIMAP_CONFIG = {"displayModeBar": False}


def layout(execution_id: str | None = None, step: str | None = None, **_query) -> html.Div:
    if parse_uuid(execution_id) is None:
        return empty_state("Not an execution id", "Open an execution from the Executions page.")
    replay = html.Span([
        html.Button("Replay event", id="execution-replay-button", n_clicks=0, className="fl-button",
                    disabled=not replay_route(),
                    title="Resubmit the stored event; steps that already succeeded are skipped"
                    if replay_route() else "Replay is not available in this server (no replay endpoint)"),
        html.Span(id="execution-replay-result", className="fl-muted")], id="execution-replay-box")
    # The skeleton comes back at once so the graph mounts and plotly.js starts loading while one callback
    # (update_execution_page) reads the header and the first window; stores never start as None, because a
    # memory store mounted with None reports a data change and would fire the callbacks listening to it.
    # Hidden when the execution cannot be opened: no Replay, timeline or Delete for a run that is not there.
    body = html.Div([
        replay,
        html.Div([html.Div([html.Button("◀ earlier steps", id="execution-prev", n_clicks=0, className="fl-button"),
                            html.Span(id="execution-window-text", className="fl-muted"),
                            html.Button("later steps ▶", id="execution-next", n_clicks=0, className="fl-button")],
                           className="fl-toolbar"),
                  dcc.Graph(id="execution-minimap", config=MINIMAP_CONFIG, figure=timeline_minimap.PLACEHOLDER)],
                 id="execution-pager", hidden=True),
        # The timeline graph arrives with its figure (update_execution_page): mounted empty, plotly drew an empty
        # chart first, 35-80 ms of the main thread before the real one. plotly.js itself starts loading when the
        # (hidden) minimap mounts, while the callback is on the server. Measured again: opening the execution in
        # the layout itself (no callback) was slower, 0.85 against 0.78 s, because plotly.js then starts later.
        dcc.Loading(html.Div(id="execution-timeline-box", className="fl-timeline-frame"), type="dot"),
        dcc.Store(id="execution-scrolled"),
        html.Div([html.H2("Step details"), dcc.Dropdown(id="execution-step", clearable=False,
                                                        placeholder="choose a step or click a bar")],
                 className="fl-section"),
        dcc.Loading(html.Div(id="execution-step-detail"), type="dot"),
        html.Div(id="execution-replay-compare"),
        dcc.Loading(html.Div(id="execution-audit"), type="dot"),
        execution_panels.delete_box(),
    ], id="execution-body")
    return html.Div([
        dcc.Store(id="execution-id", data=execution_id), dcc.Store(id="execution-link", data=step or ""),
        dcc.Store(id="execution-event-id"), dcc.Store(id="execution-window", data=0),
        dcc.Store(id="execution-meta", data={}), dcc.Store(id="execution-bars", data={}),
        dcc.Store(id="execution-step-wanted", data=""),
        dcc.Loading(html.Div(id="execution-header"), type="dot"),
        body,
    ], id="execution-page")


def _open(execution_id: UUID, step_id: UUID | None) -> dict[str, Any]:
    """The header record and the first window (around ?step= when given, else the first failure)."""
    with db.reader() as conn:
        record = timeline.execution(conn, execution_id)
        wanted = timeline.locate(conn, execution_id, step_id) if step_id else None
        failing = record["failures"][0] if record["failures"] else None
        meta = {"steps": record["step_count"], "workflow": record["workflow_id"],
                "started_at": record["started_at"].isoformat() if record["started_at"] else None,
                "failing": step_key(failing) if failing else None,
                "positions": {step_key(f): int(f["position"]) for f in record["failures"]},
                "p95": timeline.p95_by_step(conn, workflow_id=record["workflow_id"], before=record["started_at"])}
        offset = timeline.centred(wanted["position"], steps=meta["steps"]) if wanted else timeline.window_start(record)
        view = _window(conn, execution_id, meta, offset)
    return {"record": record, "meta": meta, "view": view, "wanted": step_key(wanted) if wanted else None}


def _window(conn, execution_id: UUID, meta: dict, offset: int) -> dict[str, Any]:
    """The timeline figure, dropdown options, pager text and bar keys for the window starting at `offset`."""
    steps = timeline.steps(conn, execution_id, offset=offset)
    options = [{"label": f"{row.seq} · {row.step_name} · attempt {row.attempt} · {row.status}",
                "value": f"{row.seq}:{row.attempt}"} for row in steps.itertuples()]
    last = offset + steps["seq"].nunique() if not steps.empty else offset
    # Every attempt is its own row in the ledger; the chart groups attempts of one step on one row by seq.
    bars = {f"{row.seq}:{row.attempt}": str(row.step_id) for row in steps.itertuples()}
    chart = steps.assign(step_id=steps["seq"].astype(str)) if not steps.empty else steps
    figure = figures.execution_timeline(chart, p95_by_step=meta.get("p95") or {}, height_per_row=30)
    return {"offset": offset, "figure": figure, "options": options, "bars": bars,
            "text": f"steps {offset + 1:,}–{last:,} of {meta['steps']:,}"}


def _pick(options: list[dict], *choices: str | None) -> str | None:
    """The first choice that is one of the options, else the first option."""
    values = {o["value"] for o in options}
    return next((c for c in choices if c in values), options[0]["value"] if options else None)


clientside_callback(
    """
    function(n, executionId, reason) {
        if (!n) { return window.dash_clientside.no_update; }
        if (!reason) { return 'A reason is required.'; }
        return window.flowledgerApi('DELETE', '/api/v1/executions/' + executionId, {reason: reason})
          .then(function(r) { return r.ok ? 'Deleted; the audit trail keeps a DELETED event.' :
              'Refused (' + r.status + '): ' + window.flowledgerApiReason(r); });
    }
    """,
    Output("execution-delete-result", "children"), Input("execution-delete-button", "n_clicks"),
    State("execution-id", "data"), State("execution-delete-reason", "value"), prevent_initial_call=True)


@callback(Output("execution-header", "children"), Output("execution-event-id", "data"),
          Output("execution-meta", "data"), Output("execution-window", "data"), Output("execution-bars", "data"),
          Output("execution-timeline-box", "children"), Output("execution-step", "options"),
          Output("execution-step", "value"), Output("execution-pager", "hidden"),
          Output("execution-window-text", "children"), Output("execution-body", "hidden"),
          Input("execution-id", "data"), State("execution-link", "data"))
def update_execution_page(execution_id, link):
    try:
        first = _open(parse_uuid(execution_id), parse_uuid(link))
    except NotFound:
        return empty_state("Execution not found", f"No execution {execution_id} is recorded. Check the id, or find "
                           "the run on the Executions page."), *([dash.no_update] * 9), True
    except FlowledgerError as exc:
        return error_state(str(exc)), *([dash.no_update] * 9), True
    except Exception as exc:  # an inline error, never a blank page (what panel_errors does for other panels)
        log.exception("execution page %s failed to open", execution_id)
        return error_state(f"{type(exc).__name__}: {exc}"), *([dash.no_update] * 9), True
    record, meta, view = first["record"], first["meta"], first["view"]
    # One round trip draws header and timeline together: the figure is not waiting on a second callback.
    event_id = str(record["event_id"]) if record["event_id"] else None
    graph = dcc.Graph(id="execution-timeline", figure=view["figure"], config=GRAPH_CONFIG)
    return (execution_panels.header(record), event_id, meta, view["offset"], view["bars"], graph, view["options"],
            _pick(view["options"], first["wanted"], meta["failing"]),
            meta["steps"] <= timeline.WINDOW, view["text"], False)


@callback(Output("execution-minimap", "figure"), Input("execution-meta", "data"), State("execution-id", "data"),
          State("execution-window", "data"), prevent_initial_call=True)
def update_execution_minimap(meta, execution_id, offset):
    # Asked for once the timeline is on its way: the timeline is what the page opens for, so the minimap's query,
    # figure and drawing come after it instead of delaying it.
    if not meta or meta.get("steps", 0) <= timeline.WINDOW:
        return dash.no_update
    with db.reader() as conn:
        buckets = timeline.overview(conn, parse_uuid(execution_id))
    return timeline_minimap.execution_minimap(buckets, offset=offset or 0, size=timeline.WINDOW, total=meta["steps"])


clientside_callback(
    """
    function(clicks) {
        const ctx = window.dash_clientside.callback_context;
        if (!(clicks || []).some(Boolean) || !ctx.triggered_id) { return window.dash_clientside.no_update; }
        return ctx.triggered_id.step;
    }
    """,
    Output("execution-step-wanted", "data"), Input({"type": "execution-goto", "step": ALL}, "n_clicks"),
    prevent_initial_call=True)


@callback(Output("execution-window", "data", allow_duplicate=True),
          Output("execution-timeline", "figure", allow_duplicate=True),
          Output("execution-step", "options", allow_duplicate=True),
          Output("execution-step", "value", allow_duplicate=True),
          Output("execution-window-text", "children", allow_duplicate=True),
          Output("execution-bars", "data", allow_duplicate=True),
          Output("execution-minimap", "figure", allow_duplicate=True),
          Input("execution-prev", "n_clicks"), Input("execution-next", "n_clicks"),
          Input("execution-minimap", "clickData"), Input("execution-step-wanted", "data"),
          State("execution-id", "data"), State("execution-meta", "data"), State("execution-window", "data"),
          State("execution-step", "value"), prevent_initial_call=True)
def update_execution_window(_prev, _next, click, wanted, execution_id, meta, current, chosen):
    offset = _moved(ctx.triggered_id, click, wanted, meta, current or 0)
    if offset is None:  # same window: a goto inside it only picks the step
        picked = wanted if ctx.triggered_id == "execution-step-wanted" and wanted else dash.no_update
        return (dash.no_update,) * 3 + (picked,) + (dash.no_update,) * 3
    try:
        with db.reader() as conn:
            view = _window(conn, parse_uuid(execution_id), meta, offset)
    except Exception as exc:  # the figure area says what went wrong; the header stays
        return (dash.no_update, {}, [], None, f"timeline could not be loaded: {exc}", {}, dash.no_update)
    # The minimap only moves its shaded window: a patch, not a second figure over the wire.
    minimap = Patch()
    minimap["layout"]["shapes"][0]["x0"] = offset - 0.5
    minimap["layout"]["shapes"][0]["x1"] = min(offset + timeline.WINDOW, meta["steps"]) - 0.5
    value = _pick(view["options"], wanted, chosen, meta.get("failing"))
    return offset, view["figure"], view["options"], value, view["text"], view["bars"], minimap


def _moved(trigger, click, wanted: str, meta: dict, current: int) -> int | None:
    """The new window offset after a pager, minimap or goto click; None when the window stays."""
    total, size = (meta or {}).get("steps", 0), timeline.WINDOW
    if trigger == "execution-minimap":
        offset = timeline_minimap.clicked_offset(click, total=total, size=size)
    elif trigger == "execution-step-wanted":
        position = (meta.get("positions") or {}).get(wanted)
        inside = position is None or current <= position < current + size
        offset = None if inside else timeline.centred(position, steps=total)
    else:
        step = size if trigger == "execution-next" else -size
        offset = min(max(current + step, 0), max(total - size, 0))
    return None if offset is None or offset == current else offset


# The frame shows about 20 of the window's rows; a run that fails on its last step had its red bar 100 rows
# below the fold. Whenever a step is chosen (the failing one when the page opens, a "show step" or a pick
# later), the frame scrolls its row to a third of the way down, once plotly has drawn it.
clientside_callback(
    """
    function(value) {
        const seq = String(value || '').split(':')[0];
        const frame = document.getElementById('execution-timeline-box');
        if (!seq || !frame) { return window.dash_clientside.no_update; }
        const deadline = performance.now() + 10000;
        (function scroll() {
            const label = Array.from(frame.querySelectorAll('.ytick text'))
                .find(function(t) { return (t.textContent || '').indexOf(seq + ' \u00b7') === 0; });
            if (!label) { if (performance.now() < deadline) { requestAnimationFrame(scroll); } return; }
            const top = label.getBoundingClientRect().top - frame.getBoundingClientRect().top + frame.scrollTop;
            frame.scrollTop = Math.max(0, top - frame.clientHeight / 3);
        })();
        return window.dash_clientside.no_update;
    }
    """,
    Output("execution-scrolled", "data"), Input("execution-step", "value"))


@callback(Output("execution-step", "value", allow_duplicate=True), Input("execution-timeline", "clickData"),
          State("execution-step", "options"), prevent_initial_call=True)
def update_execution_step(click, options):
    seq, attempt = (str(((click or {}).get("points") or [{}])[0].get("id", "")).split(":") + ["", ""])[:2]
    key = f"{seq}:{attempt}"
    return key if key in {o["value"] for o in options or []} else dash.no_update


@callback(Output("execution-step-detail", "children"), Input("execution-step", "value"),
          State("execution-id", "data"), State("execution-bars", "data"))
@panel_errors()
def update_execution_step_detail(key, execution_id, bars):
    step_id = (bars or {}).get(key)
    if not step_id:
        return None
    with db.reader() as conn:
        s = timeline.step(conn, payload_config(), execution_id=parse_uuid(execution_id), step_id=parse_uuid(step_id),
                          include_payloads=False)
    return execution_panels.step_detail(s, [_payload(s, "input"), _payload(s, "output")])


def _payload(s: dict, kind: str) -> html.Div:
    """Small payloads still in PostgreSQL come with the step; larger or offloaded ones on request."""
    meta = s[f"{kind}_meta"]
    if meta and not meta["uri"] and meta["size_bytes"] <= timeline.INLINE_PREVIEW_BYTES:
        return execution_panels.payload_panel(s, kind, _load(s["execution_id"], meta["payload_id"]))
    return execution_panels.payload_panel(s, kind)


def _load(execution_id, payload_id) -> html.Div:
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


# The panels below the chart are asked for once the timeline's data has arrived (execution-meta), not beside it:
# on a two-core server they took CPU from the timeline's own callback.
@callback(Output("execution-replay-compare", "children"), Input("execution-meta", "data"),
          State("execution-id", "data"), prevent_initial_call=True)
@panel_errors()
def update_execution_replay_compare(_meta, execution_id):
    with db.reader() as conn:
        pair = timeline.replay_pair(conn, parse_uuid(execution_id))
    if pair is None:
        return None
    return html.Div([html.H2("Compared with the original run"), figures.replay_comparison(*pair)],
                    className="fl-section fl-panel")


@callback(Output("execution-audit", "children"), Input("execution-meta", "data"), State("execution-id", "data"),
          prevent_initial_call=True)
@panel_errors()
def update_execution_audit(_meta, execution_id):
    try:
        with db.reader() as conn:
            found = timeline.audit_and_logs(conn, parse_uuid(execution_id))
    except NotFound as exc:
        return error_state(str(exc))
    return execution_panels.audit_and_logs(found)


clientside_callback(REPLAY_JS, Output("execution-replay-result", "children"),
                    Input("execution-replay-button", "n_clicks"), State("execution-event-id", "data"),
                    prevent_initial_call=True)
