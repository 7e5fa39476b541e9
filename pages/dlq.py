"""Dead letters: events that exhausted their retries, grouped by workflow and error, replayable per group."""
from __future__ import annotations

import dash
from dash import MATCH, Input, Output, State, callback, clientside_callback, dcc, html

from components.cards import empty_state
from components.format import iso
from pages.common import has_route, href, panel_errors
from services import browse, db

dash.register_page(__name__, path="/dlq", title="Dead letters · Flowledger", name="Dead letters")


def layout(**_query) -> html.Div:
    return html.Div([
        html.Div([html.H1("Dead letters"), html.Span("events whose workflow failed on every attempt",
                                                     className="fl-muted")], className="fl-page-head"),
        dcc.Loading(html.Div(id="dlq-groups"), type="dot"),
    ], id="dlq-page")


@callback(Output("dlq-groups", "children"), Input("dlq-groups", "id"))
@panel_errors()
def update_dlq_groups(_):
    with db.reader() as conn:
        groups = browse.dead_letter_groups(conn)
    if not groups:
        return empty_state("No dead letters", "Every event was processed or is still being retried. "
                                              "Failed events land here once their retries are exhausted.")
    can_replay = has_route("/api/v1/replays")
    head = html.Thead(html.Tr([html.Th(t) for t in ("workflow", "error", "events", "first", "last", "")]))
    rows = [_row(i, g, can_replay) for i, g in enumerate(groups)]
    total = sum(g["events"] for g in groups)
    counted = (f"{total:,} dead-lettered event{'' if total == 1 else 's'} in {len(groups)} "
               f"group{'' if len(groups) == 1 else 's'}.")
    return html.Div([html.P(counted, className="fl-muted"),
                     html.Table([head, html.Tbody(rows)], className="fl-table fl-panel")])


def _row(index: int, g: dict, can_replay: bool) -> html.Tr:
    ids = [str(e) for e in g["event_ids"]]
    return html.Tr([
        html.Td(dcc.Link(g["workflow_id"] or "(no execution)",
                         href=href("/events", status="dead_lettered", workflow=g["workflow_id"]))),
        html.Td(g["error"], className="fl-error-text"), html.Td(f"{g['events']:,}"),
        html.Td(iso(g["first_received"])), html.Td(iso(g["last_received"])),
        html.Td([dcc.Store(id={"type": "dlq-ids", "group": index}, data={"event_ids": ids,
                                                                        "workflow_id": g["workflow_id"]}),
                 html.Button(f"Replay {g['events']:,}", id={"type": "dlq-replay", "group": index}, n_clicks=0,
                             className="fl-button", disabled=not can_replay,
                             title="Queue a replay of this group" if can_replay
                             else "The replay queue endpoint is not served here"),
                 html.Span(id={"type": "dlq-result", "group": index}, className="fl-muted")]),
    ])


clientside_callback(
    """
    function(n, selection) {
        if (!n) { return window.dash_clientside.no_update; }
        var body = {selection: selection, dry_run: false, requested_by: 'dashboard',
                    reason: 'dead-letter group replayed from the dashboard'};
        return window.flowledgerApi('POST', '/api/v1/replays', body).then(function(r) {
            return r.ok ? ' queued as replay ' + r.body.replay_id : ' refused: ' + window.flowledgerApiReason(r); });
    }
    """,
    Output({"type": "dlq-result", "group": MATCH}, "children"),
    Input({"type": "dlq-replay", "group": MATCH}, "n_clicks"),
    State({"type": "dlq-ids", "group": MATCH}, "data"), prevent_initial_call=True)
