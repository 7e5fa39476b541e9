"""Retention: archive a batch of expired executions to S3 (moto on loopback) and purge their payload rows.

Each run gets its own batch under its own workflow id, loaded by COPY like the dataset (10 steps, 20
realistic payloads per execution), so the reusable --scale dataset itself is never archived and every
other measure reads the same data run after run. The clock is moved 400 days ahead, which puts the
whole batch past the 90-day hot window; `prune` is limited to the batch's workflow.
"""
from __future__ import annotations

import contextlib
import logging
import os
import random
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from moto.server import ThreadedMotoServer

from bench import dataset, serving
from bench.runner import Context, Row
from services import fake_data, inspection, retention
from services.objectstore import open_store
from services.payloads import PayloadConfig

AHEAD = timedelta(days=400)
BATCH_IDS = 90_000_000
HOT_DAYS = 90
# Dummy credentials and no config files (as tests/fixtures/s3.py): boto3 must never find real ones.
FAKE_AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true",
    "AWS_CONFIG_FILE": "/nonexistent/flowledger-bench-aws-config",
    "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/flowledger-bench-aws-credentials",
    "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost",
}


@contextlib.contextmanager
def moto_s3() -> Iterator[str]:
    """A moto S3 endpoint on 127.0.0.1 with dummy credentials in the environment; restored afterwards."""
    saved = {k: os.environ.get(k) for k in [*FAKE_AWS_ENV, "AWS_PROFILE"]}
    os.environ.update(FAKE_AWS_ENV)
    os.environ.pop("AWS_PROFILE", None)
    # moto's werkzeug access log would interleave one line per S3 request with the bench's progress.
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    port = serving.free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def batch_size(ctx: Context) -> int:
    return 300 if ctx.quick else 100_000


def load_batch(ctx: Context, workflow_id: str, count: int) -> None:
    """`count` executions of `workflow_id` over the last 30 days, by COPY as the writer (as bench/dataset.py),
    without step search text."""
    pool = {workflow_id: dataset._pool(ctx, workflow_id, variants=6 if ctx.quick else 20)}
    templates = [fake_data.trigger_payload(random.Random(f"r{n}")) for n in range(20)]
    rng = random.Random(workflow_id)
    origin = datetime.now(UTC) - timedelta(days=30)
    for first in range(0, count, dataset.CHUNK):
        rows: dict[str, list[tuple]] = {table: [] for table in dataset.COLUMNS}
        for index in range(first, min(count, first + dataset.CHUNK)):
            # Business ids from BATCH_IDS up: the dataset's own (0 to N) must stay unique, so that a payload
            # look-up of customer BC-00000042 finds one execution however many batches were archived.
            dataset._execution(rng, rows, BATCH_IDS + index, workflow_id, pool, templates,
                               origin + timedelta(days=30) * (index / count))
        # The batch's steps carry no search text: archiving never reads or moves it, and maintaining its
        # full-text and trigram entries made loading 100,000 executions take most of an hour.
        rows["steps"] = [(*row[:-1], None) for row in rows["steps"]]
        dataset.copy_rows(ctx, rows)
        ctx.progress(f"retention batch: loaded {min(count, first + dataset.CHUNK):,}/{count:,} executions")


def _ticker(ctx: Context, start: float) -> Callable[[str, int], None]:
    """A prune progress callback printing how far each phase got, at most every 10 s."""
    done: dict[str, int] = {}

    def tick(phase: str, n: int) -> None:
        done[phase] = done.get(phase, 0) + n
        ctx.progress(f"retention: {phase} {done[phase]:,} ({time.perf_counter() - start:.0f} s)")
    return tick


def _payload_view(execution: dict[str, Any]) -> list[tuple]:
    return [(str(s["step_id"]), s["input"], s["output"]) for s in execution["steps"]]


def run(ctx: Context) -> None:
    """executions/s of one prune over a fresh batch per run, and the longest single transaction."""
    count = batch_size(ctx)
    rate = ctx.add(Row("retention archive to S3", "executions/s", target="reported",
                       note=f"{count:,} executions x 10 steps (20 payloads each) per run, own workflow per run, "
                            f"clock +{AHEAD.days} d, moto S3 on loopback; archive + purge of payload rows"))
    longest = ctx.add(Row("retention longest transaction", "ms", target="<= 1,000 ms", higher_is_better=False))
    slowest: dict[str, float] = {}  # the longest transaction of each kind, over every run
    with moto_s3() as endpoint:
        store = open_store("s3://flowledger-bench/archive", local_root=ctx.workdir / "objects",
                           endpoint_url=endpoint)
        cfg = PayloadConfig(store=store)
        for _ in range(ctx.runs):
            workflow_id = f"bench-retention-{uuid.uuid4().hex[:8]}"
            load_batch(ctx, workflow_id, count)
            now = datetime.now(UTC) + AHEAD
            with ctx.database.reader() as conn:
                expired = conn.execute(sa.text(
                    "SELECT count(*) FROM execution_state WHERE workflow_id = :w AND completed_at IS NOT NULL "
                    "AND completed_at < :c AND archived_uri IS NULL"),
                    {"w": workflow_id, "c": now - timedelta(days=HOT_DAYS)}).scalar_one()
                sample = conn.execute(sa.text(
                    "SELECT execution_id FROM execution_state WHERE workflow_id = :w ORDER BY random() LIMIT 1"),
                    {"w": workflow_id}).scalar_one()
                before = _payload_view(inspection.get_execution(conn, cfg, sample))
            options = retention.RetentionOptions(hot_days=HOT_DAYS, glacier_days=100_000, workflow_id=workflow_id)
            start = time.perf_counter()
            report = retention.prune(ctx.database, cfg, now=now, options=options, progress=_ticker(ctx, start))
            seconds = time.perf_counter() - start
            archived = report.workflows.get(workflow_id, {}).get("archive_executions", 0)
            rate.product.append(archived / seconds)
            longest.product.append(report.longest_transaction_ms)
            for kind, ms in report.longest_transaction_ms_by_kind.items():
                slowest[kind] = max(slowest.get(kind, 0.0), ms)
            with ctx.database.reader() as conn:
                marked = conn.execute(sa.text(
                    "SELECT count(*) FROM execution_state WHERE workflow_id = :w AND archived_uri IS NOT NULL"),
                    {"w": workflow_id}).scalar_one()
                left = conn.execute(sa.text(
                    "SELECT count(*) FROM payloads p JOIN execution_state s ON s.execution_id = p.execution_id "
                    "WHERE s.workflow_id = :w"), {"w": workflow_id}).scalar_one()
                after = _payload_view(inspection.get_execution(conn, cfg, sample))
            ctx.check("retention: archived count equals the expired count", archived == expired == marked == count,
                      f"{archived} archived, {expired} expired, {marked} marked, {count} loaded")
            ctx.check("retention: no payload row of the batch is left in the hot table", left == 0, f"{left} left")
            ctx.check("retention: an archived execution opens with identical payloads", before == after and
                      any(i is not None for _, i, _o in after), f"{len(before)} vs {len(after)} steps")
    rate.note += f"; {report.archives_written} archive objects, {report.transactions} transactions in the last run"
    longest.met = max(longest.product) <= 1000
    # Which kind of transaction was the longest in any run, so a miss (even in one run) points at the step to fix.
    longest.note = "longest ms by kind over all runs (count in the last run): " + ", ".join(
        f"{kind} {ms:,.0f} ({report.transactions_by_kind.get(kind, 0):,})"
        for kind, ms in sorted(slowest.items(), key=lambda item: -item[1]))
