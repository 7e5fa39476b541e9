"""The execution page on a large run: the first window opens on the failure or the linked step, with a minimap."""
from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime

import pytest

from services import timeline
from tests.services.dashboard_factories import record

AT = datetime(2019, 9, 3, 8, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def execution(app):
    import pages.execution

    return pages.execution


@pytest.fixture(scope="module")
def long_run(database, runtime):
    steps = [{"step_name": f"batch_{n % 7}", "status": "completed", "ms": 5} for n in range(1, 401)]
    steps[299] = {"step_name": "charge", "seq": 300, "status": "failed", "ms": 5, "error_message": "card declined"}
    with database.writer() as conn:
        execution_id = record(conn, runtime.payloads, workflow_id=f"page-long-{uuid.uuid4().hex[:8]}", at=AT,
                              status="failed", steps=steps)
    with database.reader() as conn:
        rows = timeline.steps(conn, execution_id, offset=0, size=20)
    return str(execution_id), str(rows[rows["seq"] == 11]["step_id"].iloc[0])


def test_a_long_run_opens_on_a_window_around_its_failure_with_a_minimap(app, execution, long_run):
    execution_id, _ = long_run
    with app.test_request_context():
        _h, _e, meta, offset, bars, graph, options, value, hidden, text, _body = \
            execution.update_execution_page(execution_id, "")
        figure = graph.figure
        # the minimap is asked for once the timeline's data (meta) has arrived, with the window it opened on
        minimap = execution.update_execution_minimap(meta, execution_id, offset)
    assert offset == 299 - timeline.WINDOW // 3 and text == f"steps {offset + 1}–{offset + timeline.WINDOW} of 400"
    assert hidden is False and len(options) == timeline.WINDOW and value == "300:1" == meta["failing"]
    assert any("card declined" in (a.text or "") for a in figure.layout.annotations)
    assert minimap.layout.shapes[0].x0 == offset - 0.5
    assert bars["300:1"]


def test_a_link_to_a_step_opens_the_window_that_holds_it_with_that_step_chosen(app, execution, long_run):
    execution_id, step_id = long_run
    with app.test_request_context():
        result = execution.update_execution_page(execution_id, step_id)
    assert result[3] == 0 and result[7] == "11:1" and result[4]["11:1"] == step_id


def test_the_page_loads_plotly_only_when_a_graph_asks_and_then_the_basic_build(client):
    html = client.get(f"/executions/{uuid.uuid4()}").get_data(as_text=True)
    # not a page script (it held up every page's start); dcc.Graph fetches it from the pinned URL instead
    assert "<script src=\"/assets/plotly-basic.min.js" not in html and "package_data/plotly.min.js" not in html
    assert "_dashPlotlyJSURL" in html and "'/assets/plotly-basic.min.js'" in html
    assert client.get("/assets/plotly-basic.min.js").status_code == 200


def test_pages_carry_no_babel_polyfill_or_unused_table_bundle_but_the_regenerator_runtime_dash_needs(client):
    html = client.get("/executions").get_data(as_text=True)
    assert "/deps/polyfill@" not in html and "/dash_table/bundle." not in html
    # Dash's async components (Graph, Dropdown) call regeneratorRuntime, which the polyfill used to define
    runtime = re.search(r'src="(/assets/regenerator-runtime\.js[^"]*)"', html)
    assert runtime and "regeneratorRuntime = runtime" in client.get(runtime.group(1)).get_data(as_text=True)
    assert "/dash_ag_grid/" in html and "/dash/dcc/dash_core_components." in html


def test_only_the_list_pages_load_the_grid_bundle_and_the_others_get_a_stand_in_that_loads_it(client):
    grid_src = re.compile(r'<script src="(/_dash-component-suites/dash_ag_grid/dash_ag_grid\.[^"]*\.js)"></script>')
    for path in ("/executions", "/events", "/executions?status=failed"):
        assert grid_src.search(client.get(path).get_data(as_text=True)), path
    listed = grid_src.search(client.get("/executions").get_data(as_text=True)).group(1)
    for path in (f"/executions/{uuid.uuid4()}", "/", "/dlq", "/workflows"):
        html = client.get(path).get_data(as_text=True)
        assert not grid_src.search(html), path
        # the stand-in loads the very bundle the list pages carry, when a grid first renders
        assert f'var SRC = "{listed}";' in html and "window.dash_ag_grid = stub" in html
    assert client.get(listed).status_code == 200
