"""Plans of the search paths, for the benchmark command and the tests (never asserts)."""
from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection

from services import executions


def explain_field_lookup(conn: Connection, *, payload: dict[str, str], **filters: Any) -> str:
    """The plan of executions.search for payload field conditions (proves the GIN index is used)."""
    contains = executions.payload_filter(payload)
    sql = executions.SEARCH_SQL.format(
        join="", payload=executions.PAYLOAD_CONDITION)
    params = {"workflow": filters.get("workflow_id"), "status": filters.get("status"),
              "source": filters.get("trigger_source"), "since": filters.get("since"),
              "until": filters.get("until"), "finished_since": None, "finished_until": None,
              "after_at": None, "after_id": None,
              "contains": json.dumps(contains), "limit": 51}
    return "\n".join(r[0] for r in conn.execute(sa.text(f"EXPLAIN {sql}"), params))
