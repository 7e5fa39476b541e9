"""Read paths at scale: execution with steps, latest 50, payload look-up, free text, rollups; each vs raw SQL."""
from __future__ import annotations

import importlib.util
import json
import random
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from bench import dataset
from bench.runner import Context, Row, percentile
from services import executions, inspection, metrics, rollups
from services.objectstore import open_store
from services.payloads import PayloadConfig

RAW_EXECUTION = sa.text("""
SELECT s.status, e.workflow_id, e.trigger_payload, st.step_id, st.seq, st.attempt, st.status AS step_status,
       st.started_at, st.completed_at, st.error_message, pi.data AS input, po.data AS output
FROM execution_state s
JOIN executions e ON e.execution_id = s.execution_id AND e.created_at = s.created_at
JOIN steps st ON st.execution_id = s.execution_id
LEFT JOIN payloads pi ON pi.payload_id = st.input_payload_id
LEFT JOIN payloads po ON po.payload_id = st.output_payload_id
WHERE s.execution_id = :e ORDER BY st.seq, st.attempt
""")
RAW_LATEST = sa.text("""
SELECT execution_id, status, created_at FROM execution_state
WHERE workflow_id = :w AND created_at >= :s AND created_at < :u ORDER BY created_at DESC, execution_id DESC LIMIT 50
""")
RAW_GRID = sa.text("SELECT execution_id, workflow_id, status, trigger_source, started_at, duration_ms, "
                   "error_message FROM execution_state ORDER BY started_at DESC, execution_id DESC LIMIT 100")
RAW_LOOKUP = sa.text("SELECT execution_id FROM executions WHERE trigger_payload @> CAST(:doc AS jsonb)")
RAW_TEXT = sa.text("SELECT step_id FROM steps WHERE flowledger_step_tsv(search_text) "
                   "@@ websearch_to_tsquery('simple', :q) LIMIT 20")
RAW_FAILURE = sa.text("""
SELECT date_trunc('hour', completed_at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' AS hour, count(*),
       count(*) FILTER (WHERE status IN ('failed', 'timed_out'))
FROM execution_state WHERE completed_at >= :s AND completed_at < :u GROUP BY 1
""")
RAW_STATUS = sa.text("""
SELECT status, count(*) FROM execution_state
WHERE (completed_at >= :s AND completed_at < :u)
   OR (status IN ('pending', 'running') AND started_at >= :s AND started_at < :u)
GROUP BY 1
""")
RAW_FRAGMENT = sa.text("SELECT step_id FROM steps WHERE search_text ILIKE :like LIMIT 20")
RAW_P95 = sa.text("""
SELECT percentile_cont(0.95) WITHIN GROUP (ORDER BY duration_ms) FROM execution_state
WHERE completed_at >= :s AND completed_at < :u AND duration_ms IS NOT NULL
""")
# What the overview's error list grouped before the failures rollup (migration 0021), placed where the
# runs finished as the rollup places them.
RAW_ERRORS = sa.text("""
SELECT flowledger_error_class(failed_step, error_message) AS error, count(*) FROM execution_state
WHERE completed_at >= :s AND completed_at < :u AND status IN ('failed', 'timed_out')
GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 10
""")


def _p95_ms(conn: Any, calls: list[Callable[[], Any]]) -> float:
    times = []
    for call in calls:
        start = time.perf_counter()
        call()
        times.append((time.perf_counter() - start) * 1000)
    return percentile(times, 95)


def _pair(ctx: Context, name: str, product: Callable[[Any, Any], Any], raw: Callable[[Any, Any], Any],
          args: list[Any], target: str, limit_ms: float, max_ratio: float | None = None, note: str = "") -> Row:
    """p95 of product and raw over the same arguments, once per run, on one reader connection."""
    row = ctx.add(Row(name, "ms p95", target=target, higher_is_better=False, note=note))
    with ctx.database.reader() as conn:
        for a in args[:3]:  # warm the cache the same way for both
            product(conn, a), raw(conn, a)
        for _ in range(ctx.runs):
            row.baseline.append(_p95_ms(conn, [lambda a=a: raw(conn, a) for a in args]))
            row.product.append(_p95_ms(conn, [lambda a=a: product(conn, a) for a in args]))
    median = sorted(row.product)[len(row.product) // 2]
    ratio = row.ratio() or 0
    row.met = median <= limit_ms and (max_ratio is None or ratio <= max_ratio)
    return row


def run(ctx: Context) -> None:
    """Execution with steps, latest 50, payload field look-up and free-text search."""
    samples = 12 if ctx.quick else 200
    cfg = PayloadConfig(store=open_store("", local_root=ctx.workdir / "objects"))
    with ctx.database.reader() as conn:
        ids = [r[0] for r in conn.execute(sa.text(
            "SELECT execution_id FROM execution_state WHERE workflow_id LIKE 'bench-wf-%' ORDER BY random() "
            "LIMIT :n"), {"n": samples})]
        got = inspection.get_execution(conn, cfg, ids[0])
        raw_rows = conn.execute(RAW_EXECUTION, {"e": ids[0]}).all()
    service_steps = [(s["step_id"], s["seq"], s["attempt_count"], s["status"], s["input"] is not None,
                      s["output"] is not None) for s in got["steps"]]
    raw_steps = [(r.step_id, r.seq, r.attempt, r.step_status, r.input is not None, r.output is not None)
                 for r in raw_rows]
    ctx.check("queries: service and raw SQL return the same steps and payloads", service_steps == raw_steps,
              f"{len(service_steps)} vs {len(raw_steps)} steps")
    _pair(ctx, "execution with steps (service vs SQL)", lambda c, e: inspection.get_execution(c, cfg, e),
          lambda c, e: c.execute(RAW_EXECUTION, {"e": e}).all(), ids, "p95 <= 5 ms and <= 3x raw", 5, 3,
          note="service: one statement (steps, payloads, audit, logs), 20 payloads decompressed and parsed; "
               "the raw query only fetches the rows and blobs")

    now = datetime.now(UTC)
    rng = random.Random(9)
    windows = [(wf, now - timedelta(days=rng.randint(2, 29)))
               for wf in (rng.choice(dataset.workflows(ctx)) for _ in range(samples))]
    first = windows[0]
    with ctx.database.reader() as conn:
        page = executions.search(conn, workflow_id=first[0], since=first[1], until=first[1] + timedelta(days=1))
        raw = conn.execute(RAW_LATEST, {"w": first[0], "s": first[1], "u": first[1] + timedelta(days=1)}).all()
    ctx.check("queries: latest 50 matches the raw query", [i["execution_id"] for i in page["items"]] ==
              [r.execution_id for r in raw])
    _pair(ctx, "latest 50 executions of a workflow in a time range",
          lambda c, w: executions.search(c, workflow_id=w[0], since=w[1], until=w[1] + timedelta(days=1)),
          lambda c, w: c.execute(RAW_LATEST, {"w": w[0], "s": w[1], "u": w[1] + timedelta(days=1)}).all(),
          windows, "p95 <= 10 ms", 10)

    indexes = [rng.randrange(ctx.executions) for _ in range(samples)]
    with ctx.database.reader() as conn:
        hits = executions.search(conn, payload={"data.customer.id": dataset.customer_id(indexes[0])})["items"]
    ctx.check("queries: payload look-up finds exactly the one execution", len(hits) == 1, f"{len(hits)} hits")
    _pair(ctx, "payload field look-up (GIN)",
          lambda c, i: executions.search(c, payload={"data.customer.id": dataset.customer_id(i)}),
          lambda c, i: c.execute(RAW_LOOKUP, {"doc": json.dumps(_doc(i))})
          .all(), indexes, "p95 <= 10 ms", 10)
    _free_text(ctx, samples)
    _dashboard(ctx, ids)


def _dashboard(ctx: Context, ids: list[Any]) -> None:
    """What the dashboard reads (issue 5): the executions grid's first page and an execution's timeline."""
    from services import browse, timeline

    def timeline_data(conn: sa.Connection, execution_id: Any) -> Any:
        record = timeline.execution(conn, execution_id)
        frame = timeline.steps(conn, execution_id, offset=timeline.window_start(record))
        return record, frame, timeline.p95_by_step(conn, workflow_id=record["workflow_id"],
                                                    before=record["started_at"])

    with ctx.database.reader() as conn:
        page = browse.executions_page(conn, offset=0, limit=100)
    ctx.check("queries: the grid's first page is full", len(page["rows"]) == min(100, ctx.executions),
              f"{len(page['rows'])} rows")
    _pair(ctx, "executions grid, first page (100 rows)", lambda c, _: browse.executions_page(c, offset=0, limit=100),
          lambda c, _: c.execute(RAW_GRID).all(), list(range(len(ids))), "p95 <= 300 ms", 300,
          note="browse.executions_page also returns a capped count for the grid")
    _pair(ctx, "execution timeline data (steps, p95 per step)", timeline_data,
          lambda c, e: c.execute(RAW_EXECUTION, {"e": e}).all(), ids, "p95 <= 300 ms", 300)


def _doc(index: int) -> dict:
    return {"data": {"customer": {"id": dataset.customer_id(index)}}}


def _free_text(ctx: Context, samples: int) -> None:
    """What an investigator pastes (an order number, an email, an invoice number), and common words apart."""
    if importlib.util.find_spec("services.search") is None:
        ctx.add(Row("free-text search", "ms p95", target="p95 <= 10 ms",
                    note="not measured: services/search.py does not exist yet"))
        return
    from services import search

    rng = random.Random(11)
    indexes = [rng.randrange(ctx.executions) for _ in range(samples)]
    keys = ("order_number", "customer_email", "invoice_number")
    identifiers = [dataset.refs(i)[keys[n % len(keys)]] for n, i in enumerate(indexes)]
    with ctx.database.reader() as conn:
        found = search.search(conn, q=identifiers[0])["items"]
        owner = executions.search(conn, payload={"data.customer.id": dataset.customer_id(indexes[0])})["items"]
    ctx.check("queries: an order number finds its own execution's steps first",
              bool(found) and bool(owner) and str(found[0]["execution_id"]) == str(owner[0]["execution_id"]),
              f"{len(found)} hits for {identifiers[0]}")
    _pair(ctx, "free-text search, an identifier", lambda c, q: search.search(c, q=q),
          lambda c, q: c.execute(RAW_TEXT, {"q": q}).all(), identifiers, "p95 <= 10 ms", 10,
          note="order numbers, emails and invoice numbers of random executions (each in its execution's 10 "
               "step inputs); services.search ranks and highlights, the raw query only matches the FTS index")

    words = ["Dubois", "rate limit exceeded", "Hauptstraße", "Mechanical keyboard", "timeout", "Stockholm",
             "insufficient stock", "Zhang"]
    # Each word once per run at scale: a common word can take seconds there, and 200 of them would take hours.
    queries = [words[i % len(words)] for i in range(4 if ctx.quick else len(words))]
    row = _pair(ctx, "free-text search, a common word", lambda c, q: search.search(c, q=q),
                lambda c, q: c.execute(RAW_TEXT, {"q": q}).all(), queries, "reported", float("inf"),
                note="words in up to a quarter of all steps (the generator reuses a pool of payloads): answered "
                     "from a sample of matches and flagged \"sampled\"; the raw query stops at its first 20")
    row.met = None
    # Pieces of identifiers no whole word matches: the middle of an order number (one execution's 10 steps and
    # its 9 neighbours'), and pieces of every execution's e-mail and invoice number (answered from a sample).
    fragments = [dataset.refs(i)["order_number"][1:-1] for i in indexes[:2]] + ["shop-mail", "BINV-2026-000"]
    row = _pair(ctx, "free-text search, a fragment of an identifier", lambda c, q: search.search(c, q=q),
                lambda c, q: c.execute(RAW_FRAGMENT, {"like": f"%{q}%"}).all(), fragments, "reported",
                float("inf"), note="substring search through the trigram index when no whole word matches; the "
                                   "raw query is ILIKE through the same index, stopping at its first 20")
    row.met = None


def run_rollups(ctx: Context) -> None:
    """What the overview reads (failure rate per hour over 30 days, status counts for 24 h) vs the raw GROUP BY."""
    with ctx.database.writer() as conn:
        rollups.refresh(conn, lag_seconds=0)
    until = rollups.floor_hour(datetime.now(UTC)) + rollups.HOUR
    month = metrics.Period(until - timedelta(days=30), until)
    day = metrics.Period(until - timedelta(hours=24), until)
    with ctx.database.reader() as conn:
        hourly = metrics.failure_rate_hourly(conn, window=month)
        rolled = {row.hour: (row.executions, row.failed) for row in hourly.itertuples() if row.executions}
        raw = {r[0]: (r[1], r[2]) for r in conn.execute(RAW_FAILURE, {"s": month.since, "u": month.until})}
        counts = metrics.status_counts(conn, window=day)
        counts = dict(zip(counts["status"], counts["count"], strict=True))
        raw_counts = dict(conn.execute(RAW_STATUS, {"s": day.since, "u": day.until}).all())
    ctx.check("rollups: the overview's failure rate per hour equals the raw GROUP BY", rolled == raw,
              f"{len(rolled)} vs {len(raw)} hours")
    ctx.check("rollups: the overview's status counts equal the raw GROUP BY", counts == raw_counts,
              f"{counts} vs {raw_counts}")
    args = list(range(5 if ctx.quick else 10))
    for name, product, baseline in (
            ("failure rate per hour, 30 days, all workflows", lambda c, _: metrics.failure_rate_hourly(c, window=month),
             lambda c, _: c.execute(RAW_FAILURE, {"s": month.since, "u": month.until}).all()),
            ("status counts, last 24 h", lambda c, _: metrics.status_counts(c, window=day),
             lambda c, _: c.execute(RAW_STATUS, {"s": day.since, "u": day.until}).all())):
        _pair(ctx, name, product, baseline, args, "<= 50 ms", 50,
              note="what the overview draws: rolled-up hours plus the live tail after the watermark")
    with ctx.database.reader() as conn:
        p95 = metrics.p95_duration(conn, window=month)
        exact = conn.execute(RAW_P95, {"s": month.since, "u": month.until}).scalar()
        errors = metrics.top_failures(conn, window=month, by="error")
        raw_errors = [tuple(r) for r in conn.execute(RAW_ERRORS, {"s": month.since, "u": month.until})]
    ctx.check("rollups: the overview's p95 duration is within 5% of the exact percentile",
              (p95 is None and exact is None) or abs(p95 - exact) <= 0.05 * exact, f"{p95} vs {exact}")
    ctx.check("rollups: the overview's top errors equal the raw GROUP BY",
              list(zip(errors["error"], errors["failures"], strict=True)) == raw_errors,
              f"{len(errors)} vs {len(raw_errors)} errors")
    for name, product, baseline in (
            ("p95 duration, 30 days, all workflows", lambda c, _: metrics.p95_duration(c, window=month),
             lambda c, _: c.execute(RAW_P95, {"s": month.since, "u": month.until}).scalar()),
            ("top errors, 30 days", lambda c, _: metrics.top_failures(c, window=month, by="error"),
             lambda c, _: c.execute(RAW_ERRORS, {"s": month.since, "u": month.until}).all())):
        _pair(ctx, name, product, baseline, args, "<= 50 ms", 50,
              note="from the finished-runs rollups (duration buckets, failures by error class) plus the live tail")
    row = _pair(ctx, "overview page data, 30 days", lambda c, _: metrics.overview(c, window=month),
                lambda c, _: c.execute(RAW_FAILURE, {"s": month.since, "u": month.until}).all(), args[:3],
                "reported", float("inf"),
                note="KPIs, both charts, status counts, p95 and three failure lists in one read, all from rollups "
                     "but the events count; the baseline is the raw failure GROUP BY alone")
    row.met = None
