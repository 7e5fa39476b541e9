"""Batch ingestion: POST /api/v1/executions with E executions x 10 steps vs COPY of the same rows."""
from __future__ import annotations

import json
import random
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import requests
import sqlalchemy as sa

from bench import serving
from bench.dataset import STEP_NAMES
from bench.runner import Context, Row
from services import codec, fake_data
from services.text_extraction import search_text, step_text

TABLES = ("executions", "steps", "payloads")


def _batch(rng: random.Random, count: int) -> list[dict[str, Any]]:
    start = datetime.now(UTC) - timedelta(hours=1)
    out = []
    for _ in range(count):
        steps, moment = [], start
        for seq, name in enumerate(STEP_NAMES):
            steps.append({"step_name": name, "seq": seq, "status": "completed", "started_at": moment.isoformat(),
                          "completed_at": (moment + timedelta(milliseconds=300)).isoformat(),
                          "input": fake_data.step_payload(rng, step_name=name, size_hint=rng.randint(1024, 8192)),
                          "output": fake_data.step_payload(rng, step_name=name, size_hint=rng.randint(1024, 8192))})
            moment += timedelta(milliseconds=300)
        out.append({"execution_id": str(uuid.uuid4()), "workflow_id": "bench-batch", "trigger_source": "webhook",
                    "trigger_payload": fake_data.trigger_payload(rng), "status": "completed",
                    "started_at": start.isoformat(), "completed_at": moment.isoformat(), "steps": steps})
    return out


def _copy(ctx: Context, batch: list[dict[str, Any]]) -> float:
    """COPY the same rows (payloads as raw JSON bytes) into plain tables with the product's indexes.

    The steps carry the search text the product stores (extracted before the clock starts): without it the
    baseline skipped the full-text and trigram index entries that are most of a stored step's cost."""
    rows: dict[str, list[tuple]] = {t: [] for t in TABLES}
    now = datetime.now(UTC)
    for e in batch:
        eid = uuid.UUID(e["execution_id"])
        rows["executions"].append((eid, now, e["workflow_id"], "webhook", json.dumps(e["trigger_payload"]),
                                   "0" * 32, "0" * 16))
        for s in e["steps"]:
            sid = uuid.uuid4()
            pids = []
            for kind in ("input", "output"):
                raw = codec.canonical_json(s[kind])
                pid = uuid.uuid4()
                pids.append(pid)
                rows["payloads"].append((pid, now, eid, sid, kind, "json", len(raw), len(raw), "", raw))
            rows["steps"].append((sid, now, eid, s["seq"], s["step_name"], "action", 1, "completed", "0" * 16,
                                  pids[0], pids[1], step_text(search_text(s[k]) for k in ("input", "output"))))
    cols = {"executions": "execution_id, created_at, workflow_id, trigger_source, trigger_payload, trace_id, "
                          "root_span_id",
            "steps": "step_id, created_at, execution_id, seq, step_name, step_type, attempt, status, span_id, "
                     "input_payload_id, output_payload_id, search_text",
            "payloads": "payload_id, created_at, execution_id, step_id, kind, codec, size_bytes, stored_bytes, "
                        "sha256, data"}
    raw_conn = ctx.database.engine("admin").raw_connection()
    try:
        start = time.perf_counter()
        with raw_conn.driver_connection.cursor() as cur:
            for table in TABLES:
                with cur.copy(f"COPY bench_copy_{table} ({cols[table]}) FROM STDIN") as copy:
                    for row in rows[table]:
                        copy.write_row(row)
        raw_conn.driver_connection.commit()
        return time.perf_counter() - start
    finally:
        raw_conn.close()


def run(ctx: Context) -> None:
    """rows/s (executions + steps) of one request at a time vs COPY."""
    url = serving.start(ctx, "product")
    count = 5 if ctx.quick else 100
    with ctx.database.admin() as conn:
        for table in TABLES:
            conn.exec_driver_sql(f"DROP TABLE IF EXISTS bench_copy_{table}")
            conn.exec_driver_sql(f"CREATE TABLE bench_copy_{table} (LIKE {table} INCLUDING DEFAULTS INCLUDING INDEXES)")
    row = ctx.add(Row(f"batch ingestion {count}x10 per request", "rows/s", target=">= 0.5x COPY",
                      note="rows = executions + steps; one request at a time, several a run; COPY of the same "
                           "rows (raw JSON payload bytes, the steps' search text extracted beforehand) into plain "
                           "tables with the same indexes, full-text and trigram included"))
    rng = random.Random(5)
    # Several requests a run: one request of 5 executions lasts about a tenth of a second, and a single
    # slow one (a checkpoint, a pool connection opened) swung the quick figure between 0.25x and 0.7x.
    requests_per_run = 6 if ctx.quick else 3
    for _ in range(ctx.runs):
        batches = [_batch(rng, count) for _ in range(requests_per_run)]
        rows = sum(count + sum(len(e["steps"]) for e in batch) for batch in batches)
        row.baseline.append(rows / sum(_copy(ctx, batch) for batch in batches))
        bodies = [json.dumps({"executions": batch}) for batch in batches]
        elapsed = 0.0
        for batch, body in zip(batches, bodies, strict=True):
            start = time.perf_counter()
            response = requests.post(url + "/api/v1/executions", data=body, timeout=600,
                                     headers={"Content-Type": "application/json"})
            elapsed += time.perf_counter() - start
            ctx.check("batch: request answered 201", response.status_code == 201, response.text[:300])
            with ctx.database.reader() as conn:
                stored = conn.execute(sa.text("SELECT count(*) FROM steps WHERE execution_id = ANY(:ids)"),
                                      {"ids": [uuid.UUID(e["execution_id"]) for e in batch]}).scalar_one()
            ctx.check("batch: every step is stored", stored == len(batch) * len(STEP_NAMES),
                      f"{stored} of {len(batch) * len(STEP_NAMES)}")
        row.product.append(rows / elapsed)
    row.met = (row.ratio() or 0) >= 0.5
