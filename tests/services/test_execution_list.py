"""The executions list (GET /api/v1/executions) reads its page through an index in its own order."""
from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from services import executions
from tests.services.query_plans import ordered_plan


@pytest.mark.parametrize(("filters", "index"), [
    ({}, "execution_state_created_idx"),
    ({"workflow_id": "wf-orders", "since": datetime(2026, 1, 1, tzinfo=UTC),
      "until": datetime(2026, 1, 1, tzinfo=UTC) + timedelta(days=1)}, "execution_state_workflow_created_idx"),
])
def test_the_newest_page_is_read_in_index_order_without_sorting_the_ledger(database, filters, index):
    with database.reader() as conn:
        plan = ordered_plan(conn, lambda c: executions.search(c, **filters))
    assert index in plan and '"Node Type": "Sort"' not in plan
