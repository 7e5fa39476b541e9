"""The overview's spike link opens the executions list on exactly the failed runs the banner counted."""
from __future__ import annotations

import uuid
from contextvars import copy_context
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
from dash._callback_context import context_value
from dash._utils import AttributeDict

from tests.pages.test_callbacks import text_of
from tests.services.dashboard_factories import record

HOUR = datetime(2011, 6, 14, 14, 0, tzinfo=UTC)
MINUTE = 60_000


@pytest.fixture(scope="module")
def pages(app):
    import pages.executions
    import pages.overview

    return pages


@pytest.fixture(scope="module")
def spike(database, runtime) -> dict[str, uuid.UUID]:
    """A 14:00 hour with 3 failures in 23 finished runs; `record` ends a run one second after its last step."""
    workflow = f"spike-{uuid.uuid4().hex[:8]}"
    failures = {
        "started_before_failed_inside": (HOUR - timedelta(minutes=10), "failed", 20 * MINUTE),  # 13:50 -> 14:10:01
        "timed_out_inside": (HOUR + timedelta(minutes=20), "timed_out", 5 * MINUTE),
        "failed_inside": (HOUR + timedelta(minutes=30), "failed", 100),
        "failed_next_hour": (HOUR + timedelta(minutes=55), "failed", 10 * MINUTE),               # 14:55 -> 15:05:01
    }
    ids = {}
    with database.writer() as conn:
        for name, (at, status, ms) in failures.items():
            ids[name] = record(conn, runtime.payloads, workflow_id=workflow, at=at, status=status,
                               steps=[{"step_name": "charge", "status": status, "ms": ms, "error_message": name}])
        for minute in range(20):
            record(conn, runtime.payloads, workflow_id=workflow, at=HOUR + timedelta(minutes=minute))
    return ids


def find(component, wanted: str):
    """The component with id `wanted` in a Dash tree, or None."""
    if getattr(component, "id", None) == wanted:
        return component
    children = component if isinstance(component, list | tuple) else getattr(component, "children", None)
    for child in children if isinstance(children, list | tuple) else [children]:
        if child is not None and (found := find(child, wanted)) is not None:
            return found
    return None


def open_link(app, pages, link: str) -> tuple[object, dict, str]:
    """What the executions page shows for a link: its layout, the grid's first page and the count header."""
    query = {key: values[0] for key, values in parse_qs(urlsplit(link).query).items()}
    with app.test_request_context(link):
        layout = pages.executions.layout(**query)
        grid, store = find(layout, "executions-grid"), find(layout, "executions-filters")
        request = {"startRow": 0, "endRow": 100, "context": grid.dashGridOptions["context"]}
        response, count = pages.executions.update_executions_grid(request, store.data)
    return layout, response, count


def test_the_spike_link_lists_the_failed_runs_that_finished_in_the_banners_hour(app, pages, spike):
    with app.test_request_context():
        content = pages.overview.update_overview_content("custom", "2011-06-14T12:00", "2011-06-14T17:00")
    banner, link = text_of(content), find(content, "overview-spike-link")
    assert "Worst: 2011-06-14 14:00 UTC" in banner and "(3 of 23 runs failed)" in banner
    assert "finished in that hour" in text_of(link)
    _, response, count = open_link(app, pages, link.href)
    listed = {row["execution_id"] for row in response["rowData"]}
    # one run started in the hour before and failed inside it; one timed out (counted as failed); one
    # failed only in the next hour and is not the banner's
    assert listed == {str(spike[name]) for name in ("started_before_failed_inside", "timed_out_inside",
                                                    "failed_inside")}
    assert count == "3 executions"


def test_the_executions_page_reads_the_finished_window_and_statuses_back_into_its_filters(app, pages, spike):
    link = "/executions?status=failed%2Ctimed_out&finished_since=2011-06-14T14:00&finished_until=2011-06-14T15:00"
    layout, _, _ = open_link(app, pages, link)
    assert find(layout, "executions-status").value == ["failed", "timed_out"]
    assert find(layout, "executions-finished-since").value == "2011-06-14T14:00"
    assert find(layout, "executions-finished-until").value == "2011-06-14T15:00"
    assert find(layout, "executions-since").value == ""


def test_the_started_window_still_lists_runs_by_when_they_started(app, pages, spike):
    _, response, _ = open_link(app, pages, "/executions?status=failed&since=2011-06-14T14:00&until=2011-06-14T15:00")
    listed = {row["execution_id"] for row in response["rowData"]}
    assert listed == {str(spike["failed_inside"]), str(spike["failed_next_hour"])}


@pytest.mark.parametrize(("key", "label"), [("finished_since", "Finished from"), ("finished_until", "Finished to"),
                                            ("since", "Started from")])
def test_a_malformed_time_is_an_inline_error_and_lists_nothing(app, pages, key, label):
    with app.test_request_context():
        response, count = pages.executions.update_executions_grid({"startRow": 0, "endRow": 100},
                                                                  {"status": "failed", key: "2011-06-14T25:00"})
    assert response["rowData"] == [] and response["rowCount"] == 0
    assert count.startswith(f"{label} (UTC): “2011-06-14T25:00” is not a time")


@pytest.mark.parametrize(("filters", "message"), [
    ({"status": "failed,faield"}, "Status: “faield” is not a status; choose from completed, failed"),
    ({"trigger_source": "cron"}, "Trigger: “cron” is not a trigger; choose from webhook, schedule, manual"),
])
def test_a_status_or_trigger_the_filters_cannot_show_is_an_inline_error_not_an_empty_list(app, pages, filters,
                                                                                          message):
    # the dropdown drops a value it does not offer, so the filter would be invisible and the list empty
    with app.test_request_context():
        response, count = pages.executions.update_executions_grid({"startRow": 0, "endRow": 100}, filters)
    assert response["rowData"] == [] and count.startswith(message)


def test_apply_puts_the_finished_window_and_every_chosen_status_in_the_url(pages):
    def apply() -> str:
        context_value.set(AttributeDict(triggered_inputs=[{"prop_id": "executions-apply.n_clicks", "value": 1}]))
        return pages.executions.update_executions_nav(1, 0, 0, None, None, ["failed", "timed_out"], None, "", "",
                                                      "2011-06-14T14:00", "2011-06-14T15:00", "", "")

    query = parse_qs(urlsplit(copy_context().run(apply)).query)
    assert query == {"status": ["failed,timed_out"], "finished_since": ["2011-06-14T14:00"],
                     "finished_until": ["2011-06-14T15:00"]}
