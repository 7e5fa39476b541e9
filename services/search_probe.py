"""Measurements and plans of the search paths, for the benchmark command and the tests (never asserts)."""
from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection

from services import executions
from services.search import search


def explain_field_lookup(conn: Connection, *, payload: dict[str, str], **filters: Any) -> str:
    """The plan of executions.search for payload field conditions (proves the GIN index is used)."""
    contains = executions.payload_filter(payload)
    sql = executions.SEARCH_SQL.format(
        join="", payload=executions.PAYLOAD_CONDITION)
    params = {"workflow": filters.get("workflow_id"), "status": filters.get("status"),
              "source": filters.get("trigger_source"), "since": filters.get("since"),
              "until": filters.get("until"), "after_at": None, "after_id": None,
              "contains": json.dumps(contains), "limit": 51}
    return "\n".join(r[0] for r in conn.execute(sa.text(f"EXPLAIN {sql}"), params))


def latency_probe(conn: Connection, *, text_queries: Sequence[str] = (),
                  field_queries: Sequence[dict[str, str]] = (), repeat: int = 5,
                  clock: Callable[[], float] = time.perf_counter) -> dict[str, dict[str, float]]:
    """Milliseconds per query (min, median, max) for the benchmark command; measures, never asserts."""
    results: dict[str, dict[str, float]] = {}
    for q in text_queries:
        results[f"text:{q}"] = _timed(lambda q=q: search(conn, q=q, limit=20), repeat, clock)
    for fields in field_queries:
        key = "field:" + ",".join(f"{k}={v}" for k, v in fields.items())
        results[key] = _timed(lambda f=fields: executions.search(conn, payload=f, limit=50), repeat, clock)
    return results


def _timed(run: Callable[[], Any], repeat: int, clock: Callable[[], float]) -> dict[str, float]:
    samples = []
    for _ in range(max(1, repeat)):
        start = clock()
        run()
        samples.append((clock() - start) * 1000)
    return {"min_ms": min(samples), "median_ms": statistics.median(samples), "max_ms": max(samples),
            "runs": float(len(samples))}
