"""Workflows: definitions and versions, retention and legal hold, masking rules, recent failure rate."""
from __future__ import annotations

from datetime import UTC, datetime

import dash
from dash import Input, Output, callback, dcc, html

from components.cards import empty_state, json_block
from components.format import format_bytes, format_percent, iso
from pages.common import alert_rule, href, panel_errors
from services import browse, db, forecast, metrics

dash.register_page(__name__, path="/workflows", title="Workflows · Flowledger", name="Workflows")


def layout(**_query) -> html.Div:
    return html.Div([
        html.Div([html.H1("Workflows"), html.Span("failure rates over the last 7 days", className="fl-muted")],
                 className="fl-page-head"),
        dcc.Loading(html.Div(id="workflows-list"), type="dot"),
    ], id="workflows-page")


@callback(Output("workflows-list", "children"), Input("workflows-list", "id"))
@panel_errors()
def update_workflows_list(_):
    with db.reader() as conn:
        versions = browse.workflow_catalogue(conn)
        health = metrics.workflow_health(conn, window=metrics.period("7d", now=datetime.now(UTC)))
        storage = {r["workflow_id"]: r for r in forecast.storage_forecast(conn, now=datetime.now(UTC))}
    if not versions:
        return empty_state("No workflows yet", "Create one with PUT /api/v1/workflows/<id>, or run flowledger demo.")
    rates = {r.workflow_id: r for r in health.itertuples()}
    by_workflow: dict[str, list[dict]] = {}
    for v in versions:
        by_workflow.setdefault(v["workflow_id"], []).append(v)
    return html.Div([_card(wf, rows, rates.get(wf), storage.get(wf)) for wf, rows in by_workflow.items()])


def _card(workflow_id: str, versions: list[dict], health, storage: dict | None = None) -> html.Div:
    latest = versions[0]
    rate = health.rate if health is not None else None
    tone = "bad" if rate is not None and rate > alert_rule().threshold else "good"
    masking = latest["masking"] or {}
    facts = [("Latest version", latest["version"]), ("Trigger", _trigger(latest["definition"])),
             ("Retention", f"{latest['retention_days']} days" if latest["retention_days"] else "default"),
             ("Retain on failure", "yes" if latest["retain_on_failure"] else "no"),
             ("Legal hold", "ON — never pruned" if latest["legal_hold"] else "off"),
             ("Masking rules", ", ".join(f"{k}: {v}" for k, v in masking.items()) or "global rules only"),
             ("Runs (7 d)", f"{health.executions:,}" if health is not None else "0"),
             ("Failure rate (7 d)", html.Span(format_percent(rate), className=f"fl-rate fl-rate--{tone}"))]
    facts += _storage_facts(storage)
    history = html.Table([html.Thead(html.Tr([html.Th(t) for t in ("version", "created", "by", "note")])),
                          html.Tbody([html.Tr([html.Td(v["version"]), html.Td(iso(v["created_at"])),
                                               html.Td(v["created_by"] or "—"), html.Td(v["change_note"] or "—")])
                                      for v in versions])], className="fl-table")
    return html.Div([
        html.Div([html.H2(workflow_id), dcc.Link("executions →", href=href("/executions", workflow=workflow_id)),
                  dcc.Link("failed →", href=href("/executions", workflow=workflow_id, status="failed"))],
                 className="fl-page-head"),
        html.P((latest["definition"] or {}).get("description") or "", className="fl-muted"),
        html.Dl([i for label, value in facts for i in (html.Dt(label), html.Dd(value))], className="fl-facts"),
        html.Details([html.Summary(f"Versions ({len(versions)}) and who changed them"), history]),
        html.Details([html.Summary("Definition"), json_block(latest["definition"])]),
    ], className="fl-panel fl-section", id=f"workflow-{workflow_id}")


def _storage_facts(row: dict | None) -> list[tuple[str, object]]:
    """Storage by tier and its forecast; a >3x jump in bytes per execution is called out."""
    if not row:
        return []
    tiers = (f"{format_bytes(row['hot_bytes'])} in PostgreSQL · {format_bytes(row['object_bytes'])} offloaded · "
             f"{format_bytes(row['archive_bytes'])} archived")
    growth = (f"{row['executions_per_day']:,.1f} runs/day × {format_bytes(row['bytes_per_execution'])} → "
              f"{format_bytes(row['forecast_30d_bytes'])} in 30 days, "
              f"{format_bytes(row['steady_state_bytes'] or 0)} at steady state")
    facts: list[tuple[str, object]] = [("Storage now", tiers), ("Storage forecast", growth)]
    if row["jumped"]:
        facts.append(("Storage alert", html.Span(
            f"bytes per execution jumped to {format_bytes(row['latest_bytes_per_execution'])} "
            f"(7-day median {format_bytes(row['median_7d_bytes_per_execution'])})", className="fl-rate fl-rate--bad")))
    return facts


def _trigger(definition: dict | None) -> str:
    trigger = (definition or {}).get("trigger") or {}
    if trigger.get("type") == "event":
        return f"event {trigger.get('source', '*')} / {trigger.get('event_type', '*')}"
    if trigger.get("type") == "schedule":
        return f"schedule {trigger.get('cron')} (UTC)"
    return trigger.get("type") or "—"
