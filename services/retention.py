"""Retention: one pruning run over every workflow's policy, ending with the purge of payload rows archives now hold."""
from __future__ import annotations

import time
from collections import deque
from datetime import UTC, datetime
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy import Connection

from services.db import Database
from services.payloads import PayloadConfig
from services.retention_archive import archive_workflow, tier
from services.retention_expiry import audit_cleanup, drop_partitions, expire_workflow
from services.retention_run import KINDS, Policy, Progress, PruneReport, RetentionOptions, _BatchSize, tx

# Callers import the run's vocabulary from here, as before the stages got modules of their own.
__all__ = ["KINDS", "Policy", "PruneReport", "RetentionOptions", "policies", "prune"]

POLICIES_SQL = sa.text(
    "SELECT DISTINCT ON (workflow_id) workflow_id, retention_days, retain_on_failure, legal_hold, "
    "definition->'retention'->>'hot_days' AS hot_days FROM workflow_versions ORDER BY workflow_id, version DESC")


def policies(conn: Connection, *, hot_days: int) -> dict[str, Policy]:
    """Every workflow's retention policy from its latest version."""
    return {r.workflow_id: Policy(r.workflow_id, int(r.hot_days or hot_days), r.retention_days,
                                  r.retain_on_failure, r.legal_hold) for r in conn.execute(POLICIES_SQL)}


def prune(database: Database, cfg: PayloadConfig, *, now: datetime | None = None,
          options: RetentionOptions | None = None, progress: Progress | None = None) -> PruneReport:
    """One retention run: archive, tier, expire, clean audit events, drop partitions (dry run: count only)."""
    now = now or datetime.now(UTC)
    opts = options or RetentionOptions()
    report = PruneReport(dry_run=opts.dry_run)
    tick = progress or (lambda phase, n: None)
    with database.reader() as conn:
        known = policies(conn, hot_days=opts.hot_days)
        workflows = _workflows(conn, opts.workflow_id)
    for workflow_id in workflows:
        policy = known.get(workflow_id, Policy(workflow_id, opts.hot_days))
        if opts.days is not None:
            policy = Policy(workflow_id, opts.days, policy.retention_days, policy.retain_on_failure, policy.legal_hold)
        if policy.legal_hold:
            report.count(workflow_id, "legal_hold_kept", _count_all(database, workflow_id))
            continue
        archive_workflow(database, cfg, policy, now, opts, report, tick)
        expire_workflow(database, cfg, policy, now, opts, report, tick)
    tier(database, cfg, now, opts, report, tick)
    held = [w for w, p in known.items() if p.legal_hold]
    if opts.workflow_id is None:
        audit_cleanup(database, now, opts, held, report, tick)
    _purge_payloads(database, now, opts, report, tick)
    return report


def _workflows(conn: Connection, only: str | None) -> list[str]:
    if only:
        return [only]
    return list(conn.execute(sa.text(
        "SELECT DISTINCT workflow_id FROM execution_state ORDER BY workflow_id")).scalars())


def _count_all(database: Database, workflow_id: str) -> int:
    with database.reader() as conn:
        return conn.execute(sa.text("SELECT count(*) FROM execution_state WHERE workflow_id = :w"),
                            {"w": workflow_id}).scalar_one()


# Executions whose archived payload rows are looked up per read; payload rows per purge transaction
# start at opts.batch_size * 4 and then follow target_transaction_ms between these bounds.
PURGE_CHUNK = 100_000
PURGE_ROWS_MIN, PURGE_ROWS_MAX = 100, 10_000
PURGE_SQL = sa.text(
    "DELETE FROM payloads WHERE (payload_id, created_at) IN (SELECT p.payload_id, p.created_at FROM payloads p "
    "WHERE p.execution_id = ANY(:e) AND EXISTS (SELECT 1 FROM archived_payloads a WHERE a.payload_id = p.payload_id) "
    "LIMIT :n)")


def _purge_payloads(database: Database, now: datetime, opts: RetentionOptions, report: PruneReport,
                    tick: Progress) -> None:
    """Payload rows now held by an archive leave PostgreSQL: whole partitions when all rows went, else batches."""
    if opts.dry_run:
        return
    gone = ("EXISTS (SELECT 1 FROM archived_payloads a WHERE a.payload_id = t.payload_id) OR EXISTS "
            "(SELECT 1 FROM erased_payloads x WHERE x.payload_id = t.payload_id)")
    drop_partitions(database, "payloads", now, report, keep_sql=f"NOT ({gone})", held=[])
    for parent in ("steps", "executions", "events"):
        drop_partitions(database, parent, now, report, keep_sql="true", held=[])
    size = _BatchSize(opts.batch_size * 4, PURGE_ROWS_MIN, PURGE_ROWS_MAX, opts.target_transaction_ms)
    while True:
        # Executions with archived rows still in PostgreSQL, this run's and any an earlier run left, a chunk
        # at a time until none is left. Each read joins both tables whole, so it returns executions (about
        # 20 payload rows each), not payload ids: 200,000 ids per read meant ten such joins per 100k run.
        with database.reader() as conn:
            pending = deque(conn.execute(sa.text(
                "SELECT p.execution_id, count(*) AS n FROM payloads p JOIN archived_payloads a "
                "ON a.payload_id = p.payload_id GROUP BY p.execution_id LIMIT :n"), {"n": PURGE_CHUNK}).tuples())
        found, deleted = len(pending), 0
        while pending:
            group, rows = _take(pending, size.size)
            started = time.perf_counter()
            with tx(database, report, "payload_purge") as conn:
                n = conn.execute(PURGE_SQL, {"e": group, "n": size.size}).rowcount
            size.after(n, (time.perf_counter() - started) * 1000)
            if len(group) == 1 and 0 < n < rows:  # an execution larger than a batch: its rest comes next
                pending.appendleft((group[0], rows - n))
            report.payload_rows_deleted += n
            deleted += n
            tick("purge", n)
        if found < PURGE_CHUNK or deleted == 0:
            return


def _take(pending: deque[tuple[UUID, int]], budget: int) -> tuple[list[UUID], int]:
    """Executions from the front of pending whose rows fit in budget (always at least one), and their rows."""
    group, rows = [], 0
    while pending and (not group or rows + pending[0][1] <= budget):
        execution_id, n = pending.popleft()
        group.append(execution_id)
        rows += n
    return group, rows

