"""The plans PostgreSQL picks for the statement a service function runs (captured, not copied)."""
from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa

Read = Callable[[sa.Connection], Any]


def plan_text(conn: sa.Connection, read: Read) -> str:
    """EXPLAIN of the first statement `read` runs on conn, as text."""
    statement, parameters = _first_statement(conn, read)
    return "\n".join(r[0] for r in conn.exec_driver_sql(f"EXPLAIN {statement}", parameters))


def ordered_plan(conn: sa.Connection, read: Read) -> str:
    """The JSON plan of the first statement `read` runs, with sequential scans and sorts off.

    Off so that a small test ledger is not simply read whole or sorted (which is cheapest depends on what other
    tests stored): the question is whether an index gives the statement's order. Without one the plan still
    holds a Sort node.
    """
    statement, parameters = _first_statement(conn, read)
    conn.exec_driver_sql("SET LOCAL enable_seqscan = off")
    conn.exec_driver_sql("SET LOCAL enable_sort = off")
    return json.dumps(conn.exec_driver_sql(f"EXPLAIN (FORMAT JSON) {statement}", parameters).scalar_one())


def _first_statement(conn: sa.Connection, read: Read) -> tuple[str, Any]:
    statements = []

    def capture(_conn, _cursor, statement, parameters, _context, _many):
        statements.append((statement, parameters))

    sa.event.listen(conn, "before_cursor_execute", capture)
    try:
        read(conn)
    finally:
        sa.event.remove(conn, "before_cursor_execute", capture)
    return statements[0]
