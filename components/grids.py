"""dash-ag-grid tables on the infinite row model: column sets and request/response adapters."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

import dash_ag_grid as dag
import pandas as pd

from components.theme import STATUS_COLORS

DEFAULT_PAGE = 100
NO_ROWS = "No {what} match these filters. Widen the time range or press Reset."
MAX_PAGE = 1000
_EQUALS_FILTER = {
    "filter": "agTextColumnFilter",
    "filterParams": {
        "filterOptions": ["equals"],
        "maxNumConditions": 1,
        "buttons": ["apply", "reset"],
        "closeOnApply": True,
    },
}
TIME_WIDTH = 175  # "2026-11-22 09:41:07" whole: at flex widths a 1440 px window cut it to "2026-11-22 0…"
_TIME_FORMAT = {"function": "params.value ? params.value.replace('T', ' ').slice(0, 19) : ''"}
_DURATION_FORMAT = {
    "function": (
        "params.value == null ? '' : params.value < 1000 ? Math.round(params.value) + ' ms' : "
        "params.value < 60000 ? (params.value / 1000).toFixed(1) + ' s' : (params.value / 60000).toFixed(1) + ' min'"
    )
}


def _link(field: str, prefix: str, header: str) -> dict[str, Any]:
    """A column whose cells are markdown links to `<prefix>/<value>`."""
    getter = f"params.data ? '[' + params.data.{field} + '](' + '{prefix}/' + params.data.{field} + ')' : ''"
    return {
        "field": field,
        "headerName": header,
        "cellRenderer": "markdown",
        "valueGetter": {"function": getter},
        "minWidth": 300,
    }


def _status(field: str = "status") -> dict[str, Any]:
    """A status column coloured by a CSS class per known status."""
    rules = {f"fl-cell-status--{name}": f"params.value === '{name}'" for name in STATUS_COLORS}
    return {"field": field, "headerName": "Status", "cellClassRules": rules, "maxWidth": 140, **_EQUALS_FILTER}


EXECUTION_COLUMNS: list[dict[str, Any]] = [
    _link("execution_id", "/executions", "Execution"),
    {"field": "workflow_id", "headerName": "Workflow", **_EQUALS_FILTER},
    _status(),
    {"field": "trigger_source", "headerName": "Trigger", **_EQUALS_FILTER},
    {"field": "started_at", "headerName": "Started (UTC)", "valueFormatter": _TIME_FORMAT, "sort": "desc",
     "minWidth": TIME_WIDTH},
    # the finish too: a run listed by when it failed (the overview's spike link) can have started the hour before
    {"field": "completed_at", "headerName": "Finished (UTC)", "valueFormatter": _TIME_FORMAT, "minWidth": TIME_WIDTH},
    {
        "field": "duration_ms",
        "headerName": "Duration",
        "valueFormatter": _DURATION_FORMAT,
        "type": "rightAligned",
        "maxWidth": 120,
    },
    {"field": "error_message", "headerName": "Error", "tooltipField": "error_message", "sortable": False, "flex": 2},
]
EVENT_COLUMNS: list[dict[str, Any]] = [
    _link("event_id", "/events", "Event"),
    {"field": "source_system", "headerName": "Source", **_EQUALS_FILTER},
    {"field": "event_type", "headerName": "Event type", **_EQUALS_FILTER},
    _status(),
    {"field": "received_at", "headerName": "Received (UTC)", "valueFormatter": _TIME_FORMAT, "sort": "desc"},
    {
        "field": "body_sha256",
        "headerName": "SHA-256",
        "sortable": False,
        "valueFormatter": {"function": "params.value ? params.value.slice(0, 12) + '…' : ''"},
    },
]


def _infinite_grid(id: str, columns: list[dict[str, Any]], filters: Mapping[str, Any], *, nothing: str) -> dag.AgGrid:
    """An infinite-row-model grid; page filters ride along as the grid context into every getRowsRequest."""
    context = {key: value for key, value in filters.items() if value not in (None, "", [])}
    return dag.AgGrid(
        id=id,
        rowModelType="infinite",
        columnDefs=columns,
        defaultColDef={"sortable": True, "resizable": True, "filter": False, "flex": 1, "minWidth": 100},
        dashGridOptions={
            "context": context,
            "cacheBlockSize": DEFAULT_PAGE,
            "maxBlocksInCache": 20,
            "infiniteInitialRowCount": DEFAULT_PAGE,
            "rowBuffer": 10,
            "rowHeight": 32,
            "headerHeight": 34,
            "animateRows": False,
            "tooltipShowDelay": 300,
            "suppressCellFocus": True,
            # AG Grid's own "No Rows To Show" does not say what to do about it.
            "localeText": {"noRowsToShow": nothing},
        },
        className="fl-grid",
        style={"height": "calc(100vh - 220px)", "minHeight": "360px"},
    )


def executions_grid(id: str, **filters: Any) -> dag.AgGrid:
    """Executions table: id links to /executions/<id>, coloured status, server-side rows and sorting."""
    return _infinite_grid(id, EXECUTION_COLUMNS, filters, nothing=NO_ROWS.format(what="executions"))


def events_grid(id: str, **filters: Any) -> dag.AgGrid:
    """Events table: id links to /events/<id>, coloured status, server-side rows and sorting."""
    return _infinite_grid(id, EVENT_COLUMNS, filters, nothing=NO_ROWS.format(what="events"))


def to_filters(request: Mapping[str, Any] | None, *, columns: Iterable[str] | None = None) -> dict[str, Any]:
    """Turn a getRowsRequest into {"offset", "limit", "sort": ["-col", ...], **context, **column filters}."""
    request = request or {}
    allowed = set(columns) if columns is not None else None
    start = max(int(request.get("startRow") or 0), 0)
    end = int(request.get("endRow") or start + DEFAULT_PAGE)
    result: dict[str, Any] = {key: value for key, value in (request.get("context") or {}).items() if value is not None}
    result.update(offset=start, limit=min(max(end - start, 1), MAX_PAGE), sort=[])
    for item in request.get("sortModel") or []:
        column = item.get("colId")
        if column and (allowed is None or column in allowed):
            result["sort"].append(("-" if item.get("sort") == "desc" else "") + column)
    for column, model in (request.get("filterModel") or {}).items():
        if allowed is None or column in allowed:
            result.update(_column_filter(column, model))
    return result


def _column_filter(column: str, model: Mapping[str, Any]) -> dict[str, Any]:
    """One AG Grid filter model as flat keyword filters; combined (AND/OR) models are not supported and dropped."""
    kind, op = model.get("filterType"), model.get("type")
    if kind == "set":
        return {column: list(model.get("values") or [])}
    if kind == "date":
        low, high = model.get("dateFrom"), model.get("dateTo")
        ranges = {
            "greaterThan": {f"{column}_from": low},
            "lessThan": {f"{column}_to": low},
            "inRange": {f"{column}_from": low, f"{column}_to": high},
            "equals": {column: low},
        }
        return ranges.get(op, {})
    value = model.get("filter")
    if op == "inRange":
        return {f"{column}_min": value, f"{column}_max": model.get("filterTo")}
    named = {
        "equals": column,
        "contains": f"{column}_contains",
        "greaterThan": f"{column}_min",
        "greaterThanOrEqual": f"{column}_min",
        "lessThan": f"{column}_max",
        "lessThanOrEqual": f"{column}_max",
    }
    return {named[op]: value} if op in named and value is not None else {}


def rows_response(rows: list[dict[str, Any]] | pd.DataFrame, total: int | None = None) -> dict[str, Any]:
    """getRowsResponse for the grid: JSON-safe rowData, and rowCount when the total is known."""
    records = rows.to_dict("records") if isinstance(rows, pd.DataFrame) else list(rows)
    response: dict[str, Any] = {"rowData": [{key: _jsonable(value) for key, value in row.items()} for row in records]}
    if total is not None:
        # an unknown total is left out: AG Grid reads a null rowCount as 0 and would stop scrolling
        response["rowCount"] = int(total)
    return response


def _jsonable(value: Any) -> Any:
    """A cell value the browser can show: ISO UTC times, strings for ids, None for missing numbers."""
    if value is None or value is pd.NaT:
        return None
    if isinstance(value, datetime):
        stamp = value if value.tzinfo else value.replace(tzinfo=UTC)
        return stamp.astimezone(UTC).isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, UUID | bytes):
        return value.hex() if isinstance(value, bytes) else str(value)
    if isinstance(value, Decimal):
        return float(value)
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value
