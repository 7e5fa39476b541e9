"""Reads for the execution page: header, steps windowed by seq, the minimap, per-step p95, payloads, replay pairs."""
from __future__ import annotations

from typing import Any
from uuid import UUID

import pandas as pd
from sqlalchemy import Connection

from services import inspection, payloads, sqlblocks
from services.errors import NotFound
from services.payloads import PayloadConfig
from services.tracecontext import traceparent

# Steps drawn at once. Drawing cost grows with rows (SVG bars, tick labels, text measurement), so the page opens
# on a window of this many steps around the failure and the minimap/pager load the neighbours.
WINDOW = 150
# Where the first failing step sits in its window: a third down, so what led to it and what followed both show.
FAILURE_ROW = WINDOW // 3
MINIMAP_BUCKETS = 200
COMPARE_LIMIT = 600
P95_RUNS = 200
LOG_LIMIT = 500
INLINE_PREVIEW_BYTES = 256 * 1024


def _sql(name: str):
    return sqlblocks.load("timeline.sql")[name]


def execution(conn: Connection, execution_id: UUID) -> dict[str, Any]:
    """The execution row with its step counts, failing steps, traceparent and replays of it."""
    row = conn.execute(inspection.EXECUTION_SQL, {"e": execution_id}).mappings().one_or_none()
    if row is None:
        raise NotFound(f"execution {execution_id} not found")
    record = dict(row)
    stats = conn.execute(_sql("step_stats"), {"e": execution_id}).mappings().one()
    record.update(step_count=stats["steps"], attempt_count=stats["attempts"],
                  first_failed_seq=stats["first_failed_seq"])
    record["failures"] = [dict(r) for r in conn.execute(_sql("failures"), {"e": execution_id}).mappings()]
    record["traceparent"] = traceparent(record["trace_id"], record["root_span_id"])
    record["replays"] = [dict(r) for r in conn.execute(_sql("replays_of"), {"e": execution_id}).mappings()]
    return record


def steps(conn: Connection, execution_id: UUID, *, offset: int = 0, size: int = WINDOW) -> pd.DataFrame:
    """Every attempt of the steps at seq positions [offset, offset + size), ordered by seq and attempt."""
    result = conn.execute(_sql("window"), {"e": execution_id, "offset": max(offset, 0), "size": size})
    return pd.DataFrame(result.mappings().all(), columns=list(result.keys()))


def window_start(record: dict[str, Any], *, size: int = WINDOW) -> int:
    """The window offset that shows the first failing step (0 when it already fits or nothing failed)."""
    if record["step_count"] <= size or not record["failures"]:
        return 0
    return centred(int(record["failures"][0]["position"]), steps=record["step_count"], size=size)


def centred(position: int, *, steps: int, size: int = WINDOW) -> int:
    """The offset of a full window that shows the step at `position` about a third of the way down."""
    return min(max(position - size // 3, 0), max(steps - size, 0))


def locate(conn: Connection, execution_id: UUID, step_id: UUID) -> dict[str, int] | None:
    """seq, attempt and position (index among the execution's distinct seqs) of one step attempt, or None."""
    row = conn.execute(_sql("locate"), {"e": execution_id, "s": step_id}).mappings().one_or_none()
    return dict(row) if row else None


def overview(conn: Connection, execution_id: UUID, *, buckets: int = MINIMAP_BUCKETS) -> pd.DataFrame:
    """The whole execution in at most `buckets` runs of consecutive steps, with failed/retried/inactive counts."""
    result = conn.execute(_sql("overview"), {"e": execution_id, "buckets": max(buckets, 1)})
    return pd.DataFrame(result.mappings().all(), columns=list(result.keys()))


def p95_by_step(conn: Connection, *, workflow_id: str, before: Any, runs: int = P95_RUNS) -> dict[str, float]:
    """Per step name, the p95 duration (ms) of completed attempts in the workflow's last `runs` good runs."""
    if before is None:
        return {}
    rows = conn.execute(_sql("p95"), {"workflow": workflow_id, "before": before, "runs": runs})
    return {r.step_name: float(r.p95_ms) for r in rows if r.p95_ms is not None}


def step(conn: Connection, cfg: PayloadConfig, *, execution_id: UUID, step_id: UUID,
         include_payloads: bool = True) -> dict[str, Any]:
    """One step attempt with its input and output (offloaded ones fetched from the object store)."""
    row = conn.execute(_sql("step"), {"s": step_id, "e": execution_id}).mappings().one_or_none()
    if row is None:
        raise NotFound(f"step {step_id} not found in execution {execution_id}")
    record = dict(row)
    for kind in ("input", "output"):
        payload_id = record.pop(f"{kind}_payload_id")
        meta = conn.execute(_sql("payload_meta"), {"p": payload_id, "e": execution_id}).mappings().one_or_none() \
            if payload_id else None
        record[f"{kind}_meta"] = dict(meta) if meta else None
        record[kind] = payloads.load(conn, cfg, payload_id) if include_payloads and payload_id else None
    return record


def audit_and_logs(conn: Connection, execution_id: UUID, *, limit: int = LOG_LIMIT) -> dict[str, list[dict]]:
    """The execution's audit events and its first `limit` log lines."""
    logs = conn.execute(_sql("logs"), {"e": execution_id, "limit": limit}).mappings().all()
    return {"audit_events": inspection.audit_events(conn, execution_id), "logs": [dict(r) for r in logs]}


def replay_pair(conn: Connection, execution_id: UUID) -> tuple[pd.DataFrame, pd.DataFrame] | None:
    """(original steps, replay steps) when execution_id is a replay; None otherwise."""
    record = conn.execute(inspection.EXECUTION_SQL, {"e": execution_id}).mappings().one_or_none()
    if record is None or record["replay_of"] is None:
        return None
    return steps(conn, record["replay_of"], size=COMPARE_LIMIT), steps(conn, execution_id, size=COMPARE_LIMIT)
