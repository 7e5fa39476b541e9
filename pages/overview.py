"""Overview: what is failing, how often, and where, for the chosen period."""
from __future__ import annotations

from datetime import UTC, datetime, timedelta

import dash
from dash import Input, Output, callback, dcc, html

from components import figures
from components.cards import empty_state, kpi_card
from components.format import format_duration, format_percent, threshold_percent
from pages.common import alert_rule, curl_example, field, panel_errors, parse_time
from services import db, metrics
from services.alerting import AlertConfig
from services.links import failures_path

dash.register_page(__name__, path="/", title="Overview · Flowledger", name="Overview")
PERIODS = [{"label": "Last 24 h", "value": "24h"}, {"label": "7 days", "value": "7d"},
           {"label": "30 days", "value": "30d"}, {"label": "Custom", "value": "custom"}]


def layout(period: str = "24h", since: str | None = None, until: str | None = None, **_query) -> html.Div:
    picker = html.Div([
        dcc.RadioItems(PERIODS, value=period if period in metrics.PERIODS or period == "custom" else "24h",
                       id="overview-period", inline=True, className="fl-segmented"),
        field("From (UTC)", dcc.Input(id="overview-since", type="datetime-local", value=since or "",
                                      debounce=True)),
        field("To (UTC)", dcc.Input(id="overview-until", type="datetime-local", value=until or "",
                                    debounce=True)),
    ], className="fl-toolbar")
    return html.Div([
        html.Div([html.H1("Overview"), picker], className="fl-page-head"),
        dcc.Loading(html.Div(id="overview-content"), type="dot", delay_show=300),
    ], id="overview-page")


@callback(Output("overview-content", "children"), Input("overview-period", "value"),
          Input("overview-since", "value"), Input("overview-until", "value"))
@panel_errors()
def update_overview_content(period: str, since: str | None, until: str | None):
    now = datetime.now(UTC)
    window = metrics.period(period, now=now, since=parse_time(since), until=parse_time(until)) \
        if period != "custom" or since else metrics.period("24h", now=now)
    rule = alert_rule()
    with db.reader() as conn:
        data = metrics.overview(conn, window=window, threshold=rule.threshold, min_executions=rule.min_executions)
    if not data["kpis"]["executions"] and not data["kpis"]["events"]:
        return empty_state("Nothing recorded in this period",
                           "Send a webhook to start recording, or fill a demo ledger with flowledger demo.",
                           code=curl_example())
    return html.Div([_kpis(data["kpis"]), _alert(data["crossings"], rule), _charts(data, rule)])


def _kpis(k: dict) -> html.Div:
    rate = k["success_rate"]
    tone = "neutral" if rate is None else "good" if rate >= 0.95 else "warn" if rate >= 0.9 else "bad"
    return html.Div([
        kpi_card("Events received", f"{k['events']:,}"),
        kpi_card("Executions", f"{k['executions']:,}", subtitle=f"{k['failed']:,} failed or timed out",
                 tone="bad" if k["failed"] else "neutral"),
        kpi_card("Success rate", format_percent(rate), subtitle="of finished executions", tone=tone),
        kpi_card("p95 duration", format_duration(k["p95_ms"])),
        html.A(kpi_card("Dead letters", f"{k['dead_lettered']:,}", subtitle="waiting for replay →",
                        tone="bad" if k["dead_lettered"] else "good"), href="/dlq", className="fl-kpi-link",
               id="overview-dlq-link"),
    ], className="fl-kpis")


def _alert(crossings, rule: AlertConfig) -> html.Div | None:
    line = f"{threshold_percent(rule.threshold)} failure-rate alert line"
    if crossings.empty:
        return html.Div(f"No hour crossed the {line} in this period "
                        f"(hours with at least {rule.min_executions} finished runs, as paging counts).",
                        className="fl-banner fl-banner--good")
    worst = crossings.iloc[0]
    start = worst["hour"].to_pydatetime()
    # The rate counts a run in the hour it finished, as failed or timed out: the link lists exactly those.
    link = failures_path(since=start, until=start + timedelta(hours=1))
    return html.Div([
        html.Strong(f"{len(crossings)} hour(s) above the {line} with at least {rule.min_executions} finished runs. "),
        f"Worst: {start:%Y-%m-%d %H:00} UTC — {format_percent(worst['rate'])} "
        f"({int(worst['failed'])} of {int(worst['executions'])} runs failed). ",
        dcc.Link("See the failed runs that finished in that hour →", href=link, id="overview-spike-link"),
    ], className="fl-banner fl-banner--bad", role="alert")


def _graph(fig, name: str) -> dcc.Graph:
    return dcc.Graph(figure=fig, id=f"overview-{name}", config={"displaylogo": False, "displayModeBar": False},
                     className="fl-panel")


def _charts(data: dict, rule: AlertConfig) -> html.Div:
    hourly = figures.failure_rate_hourly(data["hourly"], threshold=rule.threshold, min_runs=rule.min_executions)
    return html.Div([
        html.Div([_graph(hourly, "hourly"),
                  _graph(figures.status_counts(data["status_counts"]), "status")], className="fl-grid-2-1"),
        _graph(figures.failure_rate_daily(data["daily"]), "daily"),
        html.Div([
            _graph(figures.top_failures(data["by_error"], label="error", title="Top errors"), "by-error"),
            _graph(figures.top_failures(data["by_workflow"], label="workflow_id", title="Failures by workflow"),
                   "by-workflow"),
            _graph(figures.top_failures(data["by_event_type"], label="event_type", title="Failures by event type"),
                   "by-event-type"),
        ], className="fl-grid-3"),
    ])
