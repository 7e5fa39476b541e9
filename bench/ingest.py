"""Webhook ingestion: 16 concurrent clients POST 2 KB JSON to the product and to the baseline, same gunicorn."""
from __future__ import annotations

import json
import random
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from bench import serving
from bench.runner import Context, Row, percentile
from services import fake_data

CLIENTS = 16
WARMUP = 300


def _load(url: str, path: str, total: int, seconds: float, body: Path) -> dict[str, Any]:
    out = subprocess.run([sys.executable, "-m", "bench.loadgen", url, path, str(CLIENTS), str(total), str(seconds),
                          str(body)], capture_output=True, check=True, text=True, cwd=Path(__file__).parent.parent)
    result = json.loads(out.stdout)
    if not result["latencies"]:  # every client failed: say why instead of failing on an empty percentile
        raise RuntimeError(f"no request to {url}{path} completed: {out.stderr[-2000:]}")
    return result


def run(ctx: Context) -> None:
    """events/s and p99 of the product against the minimal durable-INSERT baseline, alternating runs."""
    product, baseline = serving.start(ctx, "product"), serving.start(ctx, "baseline")
    body = ctx.workdir / "trigger.json"
    body.write_text(json.dumps(fake_data.trigger_payload(random.Random(3))))
    # 300 requests ran for under half a second: the clients' ramp-up and tail and the pools still
    # opening connections decided the figure. 1,500 keeps --quick short and measures steady state.
    total, seconds = (1500, 8.0) if ctx.quick else (6000, 30.0)
    rate = ctx.add(Row("webhook ingestion, 2 KB, 16 clients", "events/s", target=">= 0.8x baseline",
                       note=f"bounded at {total} requests or {seconds:.0f} s per run; gunicorn gthread "
                            f"{serving.WORKERS}x{serving.THREADS}; closed-loop Python clients on the same 2 cores"))
    p99 = ctx.add(Row("webhook ingestion p99 latency", "ms", target="reported", higher_is_better=False))
    # Warm both until every pooled connection is open and has prepared its statement (psycopg
    # prepares after 5 uses): 50 requests over 16 clients left most connections cold.
    _load(product, "/api/v1/events/warmup", WARMUP, 10, body)
    _load(baseline, "/events/warmup", WARMUP, 10, body)
    for _ in range(ctx.runs):
        source = f"bench-{uuid.uuid4().hex[:8]}"
        for row_values, url, path in ((rate.baseline, baseline, "/events/x"),
                                      (rate.product, product, f"/api/v1/events/{source}")):
            result = _load(url, path, total, seconds, body)
            row_values.append(result["requests"] / result["seconds"])
            (p99.baseline if url == baseline else p99.product).append(percentile(result["latencies"], 99) * 1000)
            ctx.check(f"ingest: every {('product' if url == product else 'baseline')} request answered 202",
                      set(result["statuses"]) == {"202"}, str(result["statuses"]))
            if url == product:
                with ctx.database.reader() as conn:
                    stored = conn.execute(sa.text("SELECT count(*) FROM event_state WHERE source_system = :s"),
                                          {"s": source}).scalar_one()
                ctx.check("ingest: every accepted event is stored", stored == result["requests"],
                          f"{stored} stored, {result['requests']} accepted")
    ratio = rate.ratio() or 0
    rate.met = ratio >= 0.8
