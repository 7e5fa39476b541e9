"""GET /api/v1/executions/<id> over HTTP against the served product: p95."""
from __future__ import annotations

import time

import requests
import sqlalchemy as sa

from bench import serving
from bench.runner import Context, Row, percentile


def run(ctx: Context) -> None:
    """p95 latency of one keep-alive client fetching random executions with their steps."""
    url = serving.start(ctx, "product")
    with ctx.database.reader() as conn:
        ids = [str(r[0]) for r in conn.execute(sa.text(
            "SELECT execution_id FROM execution_state WHERE workflow_id LIKE 'bench-wf-%' ORDER BY random() "
            "LIMIT :n"), {"n": 15 if ctx.quick else 200})]
    row = ctx.add(Row("GET /api/v1/executions/<id>", "ms p95", target="p95 <= 20 ms", higher_is_better=False,
                      note="one keep-alive client; 10 steps, 20 payloads decompressed per execution and "
                           "sent as stored JSON"))
    with requests.Session() as session:
        for e in ids[:5]:
            session.get(f"{url}/api/v1/executions/{e}", timeout=30)
        body = session.get(f"{url}/api/v1/executions/{ids[0]}", timeout=30).json()
        with ctx.database.reader() as conn:
            stored = tuple(conn.execute(sa.text(
                "SELECT count(*), count(input_payload_id), count(output_payload_id) FROM steps "
                "WHERE execution_id = :e"), {"e": ids[0]}).one())
        sent = (len(body["steps"]), sum(s["input"] is not None for s in body["steps"]),
                sum(s["output"] is not None for s in body["steps"]))
        ctx.check("http: the body holds every step with its payloads", sent == stored, f"{sent} vs {stored}")
        for _ in range(ctx.runs):
            times, statuses = [], set()
            for e in ids:
                start = time.perf_counter()
                response = session.get(f"{url}/api/v1/executions/{e}", timeout=30)
                times.append((time.perf_counter() - start) * 1000)
                statuses.add(response.status_code)
            row.product.append(percentile(times, 95))
            ctx.check("http: every execution answered 200", statuses == {200}, str(statuses))
    row.met = sorted(row.product)[len(row.product) // 2] <= 20
