"""The execution page's panels: header, failure callout, step detail, payload panels, audit and log tables."""
from __future__ import annotations

from typing import Any

from dash import dcc, html

from components.cards import status_badge
from components.format import format_bytes, format_duration, iso


def step_key(step: dict) -> str:
    """A step attempt's short key, `seq:attempt`: what bars, dropdown options and goto buttons carry.

    Not the step_id: the dropdown indexes every substring of every option value for its search box, and a
    uuid per option made that the single largest cost of opening a large execution.
    """
    return f"{step['seq']}:{step['attempt']}"


def header(r: dict) -> html.Div:
    """Workflow, status and the run's facts, with the failing steps named above everything else."""
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
        failure_callout(r),
        _facts(facts),
    ])


def failure_callout(r: dict) -> html.Div | None:
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
            html.Button("show step", id={"type": "execution-goto", "step": step_key(f)}, n_clicks=0,
                        className="fl-link-button")]))
    more = len(r["failures"]) - 3
    if more > 0:
        items.append(html.Div(f"…and {more} more failing steps (red bars below)", className="fl-muted"))
    return html.Div(items, className="fl-banner fl-banner--bad", role="alert", id="execution-failure")


def step_detail(s: dict, payloads: list[html.Div]) -> html.Div:
    """One attempt: its facts, its error in full, then its input and output panels."""
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
    body = [html.H3(f"{s['seq']} · {s['step_name']}"), _facts(facts)]
    if s["error_message"]:
        body.append(html.Pre(s["error_message"], className="fl-error-pre"))
    body.append(html.Div(payloads, className="fl-grid-2"))
    return html.Div(body, className="fl-panel", id="execution-step-panel")


def payload_panel(s: dict, kind: str, loaded: Any = None) -> html.Div:
    """A payload panel: its size, codec and hash, then the payload (`loaded`) or a button that loads it."""
    meta = s[f"{kind}_meta"]
    title = html.H4(kind.capitalize())
    if meta is None:
        return html.Div([title, html.Span("no payload recorded", className="fl-muted")])
    where = f" · offloaded to {meta['uri']}" if meta["uri"] else ""
    info = html.Div(f"{format_bytes(meta['size_bytes'])} ({format_bytes(meta['stored_bytes'])} stored, "
                    f"{meta['codec']}){where} · sha256 {meta['sha256'][:16]}…", className="fl-muted")
    key = {"type": "execution-payload", "kind": kind, "step": str(s["step_id"])}
    if loaded is None:
        button = html.Button(f"Load {kind} ({format_bytes(meta['size_bytes'])})", n_clicks=0, className="fl-button",
                             id={**key, "type": "execution-payload-load"})
        return html.Div([title, info, html.Div(button, id=key)])
    return html.Div([title, info, html.Div(loaded, id=key)])


def audit_and_logs(found: dict) -> html.Div:
    """The run's audit events and log lines, side by side."""
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


def delete_box() -> html.Details:
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


def _facts(facts: list[tuple[str, Any]]) -> html.Dl:
    return html.Dl([item for label, value in facts for item in (html.Dt(label), html.Dd(value))],
                   className="fl-facts")


def _compact(metadata: dict | None) -> str:
    return ", ".join(f"{k}={v}" for k, v in (metadata or {}).items() if v not in (None, ""))
