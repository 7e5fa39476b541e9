"""dash-ag-grid infinite-row-model helpers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from uuid import UUID

import numpy as np
import pandas as pd

from components.grids import MAX_PAGE, events_grid, executions_grid, rows_response, to_filters


def test_executions_grid_uses_the_infinite_row_model_and_carries_page_filters_as_context():
    grid = executions_grid("executions-grid", workflow="invoice", status=None, q="")
    assert grid.rowModelType == "infinite"
    assert grid.dashGridOptions["context"] == {"workflow": "invoice"}
    fields = [c["field"] for c in grid.columnDefs]
    assert fields == [
        "execution_id",
        "workflow_id",
        "status",
        "trigger_source",
        "started_at",
        "completed_at",
        "duration_ms",
        "error_message",
    ]


def test_execution_ids_render_as_links_to_their_timeline():
    link = executions_grid("g").columnDefs[0]
    assert link["cellRenderer"] == "markdown"
    assert "/executions/" in link["valueGetter"]["function"]


def test_status_cells_get_a_class_per_status():
    status = next(c for c in executions_grid("g").columnDefs if c["field"] == "status")
    assert status["cellClassRules"]["fl-cell-status--failed"] == "params.value === 'failed'"


def test_events_grid_links_events_to_their_page():
    grid = events_grid("events-grid")
    assert grid.rowModelType == "infinite"
    assert "/events/" in grid.columnDefs[0]["valueGetter"]["function"]


def test_grid_request_becomes_offset_limit_sort_and_filters():
    request = {
        "startRow": 200,
        "endRow": 300,
        "sortModel": [{"colId": "started_at", "sort": "desc"}, {"colId": "workflow_id", "sort": "asc"}],
        "filterModel": {"status": {"filterType": "text", "type": "equals", "filter": "failed"}},
        "context": {"workflow": "invoice", "q": None},
    }
    assert to_filters(request) == {
        "workflow": "invoice",
        "offset": 200,
        "limit": 100,
        "sort": ["-started_at", "workflow_id"],
        "status": "failed",
    }


def test_missing_request_means_the_first_page_unsorted():
    assert to_filters(None) == {"offset": 0, "limit": 100, "sort": []}


def test_page_size_is_capped():
    assert to_filters({"startRow": 0, "endRow": 10**6})["limit"] == MAX_PAGE


def test_columns_outside_the_allow_list_are_dropped_from_sort_and_filters():
    request = {
        "sortModel": [{"colId": "password; drop table", "sort": "asc"}],
        "filterModel": {"secret": {"filterType": "text", "type": "equals", "filter": "x"}},
    }
    assert to_filters(request, columns=["started_at"]) == {"offset": 0, "limit": 100, "sort": []}


def test_date_and_number_filters_become_range_bounds():
    request = {
        "filterModel": {
            "started_at": {"filterType": "date", "type": "inRange", "dateFrom": "2024-05-01", "dateTo": "2024-05-02"},
            "duration_ms": {"filterType": "number", "type": "greaterThan", "filter": 500},
            "error_message": {"filterType": "text", "type": "contains", "filter": "timeout"},
        }
    }
    filters = to_filters(request)
    assert filters["started_at_from"] == "2024-05-01" and filters["started_at_to"] == "2024-05-02"
    assert filters["duration_ms_min"] == 500
    assert filters["error_message_contains"] == "timeout"


def test_rows_response_carries_rows_and_total():
    assert rows_response([{"a": 1}], 41) == {"rowData": [{"a": 1}], "rowCount": 41}


def test_rows_response_leaves_out_an_unknown_total():
    assert "rowCount" not in rows_response([], None)


def test_rows_response_makes_values_json_safe_in_utc():
    row = {
        "execution_id": UUID(int=1),
        "started_at": datetime(2024, 5, 1, 12, 0, tzinfo=timezone(timedelta(hours=2))),
        "naive": datetime(2024, 5, 1, 10, 0),
        "cost": Decimal("1.5"),
        "duration_ms": np.int64(7),
        "missing": float("nan"),
        "ended": pd.NaT,
    }
    [out] = rows_response([row])["rowData"]
    assert out == {
        "execution_id": "00000000-0000-0000-0000-000000000001",
        "started_at": "2024-05-01T10:00:00+00:00",
        "naive": datetime(2024, 5, 1, 10, 0, tzinfo=UTC).isoformat(),
        "cost": 1.5,
        "duration_ms": 7,
        "missing": None,
        "ended": None,
    }


def test_rows_response_accepts_a_data_frame():
    df = pd.DataFrame({"a": [1, 2]})
    assert rows_response(df, 2)["rowData"] == [{"a": 1}, {"a": 2}]
