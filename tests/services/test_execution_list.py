"""The executions list (GET /api/v1/executions) reads its page through an index in its own order."""
from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from services import executions


def _plan(conn, **filters) -> str:
    params = {"workflow": None, "status": None, "source": None, "since": None, "until": None,
              "finished_since": None, "finished_until": None, "after_at": None, "after_id": None, "contains": None,
              "limit": 51, **filters}
    sql = executions.SEARCH_SQL.format(join="", payload="")
    # Off so that a small test ledger is not simply read whole or sorted (whichever is cheapest depends on what
    # other tests stored): the question is whether an index gives this order. Without one the plan still sorts.
    conn.exec_driver_sql("SET LOCAL enable_seqscan = off")
    conn.exec_driver_sql("SET LOCAL enable_sort = off")
    return json.dumps(conn.execute(sa.text(f"EXPLAIN (FORMAT JSON) {sql}"), params).scalar_one())


@pytest.mark.parametrize(("filters", "index"), [
    ({}, "execution_state_created_idx"),
    ({"workflow": "wf-orders", "since": datetime(2026, 1, 1, tzinfo=UTC),
      "until": datetime(2026, 1, 1, tzinfo=UTC) + timedelta(days=1)}, "execution_state_workflow_created_idx"),
])
def test_the_newest_page_is_read_in_index_order_without_sorting_the_ledger(database, filters, index):
    with database.reader() as conn:
        plan = _plan(conn, **filters)
    assert index in plan and '"Node Type": "Sort"' not in plan
