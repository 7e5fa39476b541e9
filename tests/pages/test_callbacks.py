"""Page callbacks called directly: they read through the reader role and return components, or inline errors."""
from __future__ import annotations

import uuid
from datetime import UTC, datetime

import dash
import pytest

from components import theme
from tests.services.dashboard_factories import record

AT = datetime(2019, 9, 2, 8, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def pages(app):
    """The page modules, imported by the app factory exactly as the server does."""
    import pages.dlq
    import pages.event
    import pages.events
    import pages.execution
    import pages.executions
    import pages.overview
    import pages.workflows

    return pages


@pytest.fixture(scope="module")
def failed_run(database, runtime):
    workflow = f"pages-{uuid.uuid4().hex[:8]}"
    with database.writer() as conn:
        execution_id = record(conn, runtime.payloads, workflow_id=workflow, at=AT, status="failed",
                              payload={"customer": {"id": f"C-{uuid.uuid4().hex[:6]}"}},
                              steps=[{"step_name": "create_invoice", "status": "failed", "ms": 800,
                                      "error_message": "422 invalid invoice reference INV-2026-00001"}])
    return workflow, execution_id


def text_of(component) -> str:
    """Every string in a Dash component tree."""
    if component is None:
        return ""
    if isinstance(component, str | int | float):
        return str(component)
    if isinstance(component, list | tuple):
        return " ".join(text_of(c) for c in component)
    return text_of(getattr(component, "children", None))


def test_overview_for_a_custom_period_shows_the_failure_and_the_alert_banner(app, pages, failed_run):
    with app.test_request_context():
        content = pages.overview.update_overview_content("custom", "2019-09-02T07:00", "2019-09-02T10:00")
    text = text_of(content)
    # One failed run is above 5% but too few runs to page: the banner says no hour crossed, and why.
    assert "Success rate" in text and "No hour crossed the 5% failure-rate alert line" in text
    assert f"at least {pages.overview.metrics.ALERT_MIN_EXECUTIONS} finished runs" in text


def test_the_overview_draws_the_alert_rule_paging_is_configured_with(app, pages, failed_run):
    runtime = app.extensions["flowledger"]
    default = runtime.settings
    runtime.settings = default.model_copy(update={"failure_rate_threshold": 0.5, "alert_min_executions": 1})
    try:
        with app.test_request_context():
            content = pages.overview.update_overview_content("custom", "2019-09-02T07:00", "2019-09-02T10:00")
    finally:
        runtime.settings = default
    text = text_of(content)
    # the one failed run now pages (50%, one run is enough): the banner, the line and the red bar say so
    assert "1 hour(s) above the 50% failure-rate alert line with at least 1 finished runs." in text
    [hourly] = [g.figure for g in _graphs(content) if g.id == "overview-hourly"]
    assert any(a.text == "50% alert" for a in hourly.layout.annotations)
    assert theme.RED in list(hourly.data[0].marker.color)


def _graphs(component):
    if isinstance(component, list | tuple):
        return [g for c in component for g in _graphs(c)]
    if component is None or isinstance(component, str | int | float):
        return []
    found = [component] if type(component).__name__ == "Graph" else []
    return found + _graphs(getattr(component, "children", None))


def test_a_custom_period_ending_before_it_starts_asks_to_correct_it_instead_of_reporting_a_failure(app, pages):
    with app.test_request_context():
        shown = pages.overview.update_overview_content("custom", "2026-11-22T10:00", "2026-11-21T10:00")
    assert " ".join(text_of(shown).split()) == "Check the input: a custom period needs a start before its end"
    assert "fl-banner--warn" in shown.className


def test_overview_of_an_empty_period_says_how_to_send_an_event(app, pages):
    with app.test_request_context(base_url="http://ledger.internal:9000"):
        content = pages.overview.update_overview_content("custom", "1999-01-01T00:00", "1999-01-02T00:00")
    # The copyable curl names the address the dashboard is served on, not a fixed port.
    assert "curl -X POST http://ledger.internal:9000/api/v1/events/crm" in text_of(content)


def test_the_executions_grid_filters_by_a_payload_field(app, pages, failed_run, database):
    workflow, execution_id = failed_run
    with database.reader() as conn:
        from services import inspection

        customer = conn.execute(inspection.EXECUTION_SQL, {"e": execution_id}).mappings().one()["trigger_payload"]
    request = {"startRow": 0, "endRow": 100, "context": {"payload": f"customer.id = {customer['customer']['id']}"}}
    with app.test_request_context():
        response, count = pages.executions.update_executions_grid(request)
    assert [row["execution_id"] for row in response["rowData"]] == [str(execution_id)]
    assert response["rowCount"] == 1 and count == "1 executions"


def test_the_execution_header_names_the_failing_step_and_its_error(app, pages, failed_run):
    _, execution_id = failed_run
    with app.test_request_context():
        header, _event, meta, offset, bars, graph, options, value, hidden, _text, body_hidden = \
            pages.execution.update_execution_page(str(execution_id), "")
        figure = graph.figure  # the graph comes with its figure: no empty chart is drawn first
        detail = pages.execution.update_execution_step_detail(value, str(execution_id), bars)
        minimap = pages.execution.update_execution_minimap(meta, str(execution_id), offset)
    assert "Step 1 · create_invoice failed:  422 invalid invoice reference" in text_of(header)
    # one round trip brings header and timeline; short runs need no pager or minimap
    assert offset == 0 and hidden is True and minimap is dash.no_update and body_hidden is False
    assert [o["value"] for o in options] == ["1:1"] and value == meta["failing"] == "1:1"
    assert set(bars) == {"1:1"}
    assert graph.id == "execution-timeline"
    assert any("422 invalid invoice" in (a.text or "") for a in figure.layout.annotations)
    assert "422 invalid invoice reference" in text_of(detail)


def test_an_unknown_execution_is_an_inline_error_not_a_blank_page(app, pages):
    with app.test_request_context():
        header, *rest, body_hidden = pages.execution.update_execution_page(str(uuid.uuid4()), "")
    # nothing to replay or delete: the timeline, Replay and Delete are hidden with the error
    assert "Execution not found" in text_of(header) and all(r is dash.no_update for r in rest) and body_hidden is True


def test_an_events_status_the_dropdown_cannot_show_is_an_inline_message_not_an_empty_list(app, pages):
    with app.test_request_context():
        response, count = pages.events.update_events_grid({"startRow": 0, "endRow": 100}, {"status": "dead"})
        _, known = pages.events.update_events_grid({"startRow": 0, "endRow": 100}, {"status": "dead_lettered"})
    assert response["rowData"] == [] and count.startswith("Status: “dead” is not an event status; choose from ")
    assert "is not" not in str(known)


def test_dead_letters_and_workflows_render(app, pages):
    with app.test_request_context():
        dlq = pages.dlq.update_dlq_groups("dlq-groups")
        workflows = pages.workflows.update_workflows_list("workflows-list")
    assert text_of(dlq) and text_of(workflows)


def test_a_sliding_window_moves_by_whole_windows_and_stays_in_range(pages):
    from services import timeline

    meta = {"steps": 10_000, "positions": {"9000:1": 8_999}}
    size = timeline.WINDOW
    assert pages.execution._moved("execution-next", None, "", meta, 9_900) == 10_000 - size
    assert pages.execution._moved("execution-next", None, "", meta, 0) == size
    assert pages.execution._moved("execution-prev", None, "", meta, 0) is None
    click = {"points": [{"x": 5_024.5}]}
    assert pages.execution._moved("execution-minimap", click, "", meta, 0) == 5_024 - size // 2
    # "show step" for a failure outside the drawn window moves the window onto it
    assert pages.execution._moved("execution-step-wanted", None, "9000:1", meta, 0) == 8_999 - size // 3
    assert pages.execution._moved("execution-step-wanted", None, "9000:1", meta, 8_950) is None


def test_an_empty_ledger_says_how_to_send_the_first_event_on_the_executions_and_events_pages(app, pages,
                                                                                             fresh_database):
    from services import db

    fresh_database.migrate()
    db.configure(fresh_database)
    try:
        with app.test_request_context("/", base_url="http://ledger.internal:8050/"):
            executions, events = text_of(pages.executions.layout()), text_of(pages.events.layout())
    finally:
        db.configure(app.extensions["flowledger"].database)
    assert "No executions recorded yet" in executions and "No events received yet" in events
    for page in (executions, events):
        assert "curl -X POST http://ledger.internal:8050/api/v1/events/crm" in page
        assert "flowledger demo" in page


def test_a_ledger_with_history_shows_no_first_event_hint(app, pages, failed_run, client):
    assert client.post("/api/v1/events/pages-hint", json={"n": 1}).status_code == 202
    with app.test_request_context("/"):
        assert "No executions recorded yet" not in text_of(pages.executions.layout())
        assert "No events received yet" not in text_of(pages.events.layout())


def test_text_hits_show_the_match_marked_not_as_markup_and_say_when_they_are_a_sample(app, pages, failed_run,
                                                                                      monkeypatch):
    from services import search

    workflow, _ = failed_run
    with app.test_request_context():
        panel = pages.executions._text_hits("INV-2026-00001", workflow, None)
        monkeypatch.setattr(search, "CANDIDATES", 1)  # this one step is then "more than CANDIDATES" matches
        sampled = pages.executions._text_hits("INV-2026-00001", workflow, None)
    shown = text_of(panel)
    assert "INV-2026-00001" in shown and "<mark>" not in shown and "&lt;" not in shown

    def marks(component) -> list:
        if isinstance(component, list | tuple):
            return [m for c in component for m in marks(c)]
        if isinstance(component, dash.html.Mark):
            return [component.children]
        return marks(getattr(component, "children", None) or [])

    assert marks(panel) == ["INV-2026-00001"]
    assert "sampled" not in shown and "more than" not in shown
    assert "more than 1 steps match" in text_of(sampled)


def test_a_workflows_failure_rate_is_red_only_above_the_configured_alert_line(app, pages):
    from types import SimpleNamespace

    versions = [{"workflow_id": "wf", "version": 1, "definition": {"trigger": {"type": "manual"}},
                 "retention_days": None, "retain_on_failure": False, "legal_hold": False, "masking": {},
                 "created_at": AT, "created_by": None, "change_note": None}]
    health = SimpleNamespace(rate=0.07, executions=100)
    runtime = app.extensions["flowledger"]
    default = runtime.settings
    with app.test_request_context():
        assert "fl-rate--bad" in str(pages.workflows._card("wf", versions, health))  # 7% is above 5%
        runtime.settings = default.model_copy(update={"failure_rate_threshold": 0.1})
        try:
            assert "fl-rate--good" in str(pages.workflows._card("wf", versions, health))
        finally:
            runtime.settings = default
