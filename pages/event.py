"""Event: the body exactly as received, its hash, its status history and every execution it caused."""
from __future__ import annotations

import dash
from dash import Input, Output, State, callback, clientside_callback, dcc, html

from components.cards import empty_state, json_block, status_badge
from components.format import format_bytes, format_duration, iso
from pages.common import REPLAY_JS, panel_errors, parse_uuid, replay_route
from services import db, events

dash.register_page(__name__, path_template="/events/<event_id>", title="Event · Flowledger", name="Event")


def layout(event_id: str | None = None, **_query) -> html.Div:
    if parse_uuid(event_id) is None:
        return empty_state("Not an event id", "Open an event from the Events page.")
    available = replay_route()
    return html.Div([
        dcc.Store(id="event-id", data=event_id),
        dcc.Loading(html.Div(id="event-detail"), type="dot"),
        html.Div([html.Button("Replay this event", id="event-replay-button", n_clicks=0, className="fl-button",
                              disabled=not available,
                              title="Resubmit the stored body to the router" if available
                              else "Replay is not available in this server (no replay endpoint)"),
                  html.Span(id="event-replay-result", className="fl-muted")], className="fl-toolbar"),
    ], id="event-page")


@callback(Output("event-detail", "children"), Input("event-id", "data"))
@panel_errors()
def update_event_detail(event_id: str):
    key = parse_uuid(event_id)
    with db.reader() as conn:
        event = events.get_event(conn, key)
        raw, content_type = events.get_raw(conn, key)
    facts = [("Source", event["source_system"]), ("Event type", event["event_type"] or "—"),
             ("Received", iso(event["received_at"])), ("Content type", content_type or "—"),
             ("Size", format_bytes(event["size_bytes"])), ("SHA-256", html.Code(event["payload_hash"])),
             ("Idempotency key", event["idempotency_key"] or "—"), ("traceparent", event["traceparent"] or "—")]
    if event["rejected_reason"]:
        facts.append(("Rejected because", event["rejected_reason"]))
    history = html.Table([html.Thead(html.Tr([html.Th("at"), html.Th("status"), html.Th("detail")])), html.Tbody([
        html.Tr([html.Td(iso(h["at"])), html.Td(status_badge(h["status"])),
                 html.Td(html.Code(", ".join(f"{k}={v}" for k, v in (h["detail"] or {}).items())))])
        for h in event["status_history"]])], className="fl-table")
    runs = html.Table([html.Thead(html.Tr([html.Th(t) for t in ("execution", "workflow", "status", "started",
                                                                "duration", "replay of")])),
                       html.Tbody([html.Tr([
                           html.Td(dcc.Link(str(x["execution_id"]), href=f"/executions/{x['execution_id']}")),
                           html.Td(x["workflow_id"]), html.Td(status_badge(x["status"])), html.Td(iso(x["started_at"])),
                           html.Td(format_duration(x["duration_ms"])),
                           html.Td(str(x["replay_of"]) if x["replay_of"] else "—")]) for x in event["executions"]])],
                      className="fl-table")
    return html.Div([
        html.Div([html.H1(f"{event['source_system']} · {event['event_type'] or 'event'}"),
                  status_badge(event["processing_status"]), html.Span(str(key), className="fl-muted fl-mono")],
                 className="fl-page-head"),
        html.Dl([i for label, value in facts for i in (html.Dt(label), html.Dd(value))], className="fl-facts"),
        html.Div([html.Div([html.H2("Executions it caused"), runs if event["executions"] else
                            html.P("No execution yet.", className="fl-muted")], className="fl-panel"),
                  html.Div([html.H2("Status history"), history], className="fl-panel")], className="fl-grid-2"),
        html.Div([html.H2("Body as received"), json_block(raw)], className="fl-panel fl-section"),
    ])


clientside_callback(REPLAY_JS, Output("event-replay-result", "children"), Input("event-replay-button", "n_clicks"),
                    State("event-id", "data"), prevent_initial_call=True)
