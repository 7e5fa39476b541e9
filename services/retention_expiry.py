"""Retention's removal stages: expire executions whole, clean old audit events and logs, drop spent partitions."""
from __future__ import annotations

import logging
import re
import time
from datetime import UTC, datetime, timedelta
from uuid import UUID

import psycopg
import sqlalchemy as sa
from sqlalchemy import Connection

from services import archive_reader, deletion, opensearch_outbox
from services.db import Database
from services.payloads import PayloadConfig
from services.retention_run import Policy, Progress, PruneReport, RetentionOptions, tx

log = logging.getLogger(__name__)
# A partition drop waits this long for its locks per try, then backs off (0.1, 0.2, 0.4 s) and tries again.
DROP_LOCK_WAIT_MS = 250
DROP_TRIES = 4
DROP_BACKOFF_S = 0.1


def expire_workflow(database: Database, cfg: PayloadConfig, policy: Policy, now: datetime,
                    opts: RetentionOptions, report: PruneReport, tick: Progress) -> None:
    """Delete executions past the end of retention in short batches: metadata, payloads, orphan archives."""
    if policy.retention_days is None:
        return
    cutoff = now - timedelta(days=policy.retention_days)
    query = sa.text(
        "SELECT execution_id, event_id FROM execution_state WHERE workflow_id = :w AND completed_at < :cutoff "
        "AND NOT (:rof AND status IN ('failed', 'timed_out')) ORDER BY completed_at LIMIT :n")
    params = {"w": policy.workflow_id, "cutoff": cutoff, "rof": policy.retain_on_failure, "n": opts.batch_size}
    if opts.dry_run:
        with database.reader() as conn:
            n = conn.execute(sa.text(
                "SELECT count(*) FROM execution_state WHERE workflow_id = :w AND completed_at < :cutoff "
                "AND NOT (:rof AND status IN ('failed', 'timed_out'))"), params).scalar_one()
        report.count(policy.workflow_id, "expire_executions", n)
        tick("expire", n)
        return
    while True:
        with database.reader() as conn:
            rows = conn.execute(query, params).all()
        if not rows:
            return
        uris: list[str] = []
        with tx(database, report, "expire") as conn:
            uris = _delete_executions(conn, [r.execution_id for r in rows],
                                      [r.event_id for r in rows if r.event_id])
        for uri in uris:
            cfg.store.delete(uri)
            archive_reader.forget(uri)
        report.archives_deleted += sum(1 for u in uris if "/archives/" in u)
        report.count(policy.workflow_id, "expire_executions", len(rows))
        tick("expire", len(rows))


def _delete_executions(conn: Connection, ids: list[UUID], event_ids: list[UUID]) -> list[str]:
    """Remove executions whole; returns object URIs (offloaded payloads, emptied archives) to delete after commit."""
    p = {"ids": ids}
    deletion.record_removals(conn, kind="retention", actor="retention", reason="end of retention", execution_ids=ids)
    uris = list(conn.execute(sa.text(
        "DELETE FROM payloads WHERE execution_id = ANY(:ids) AND uri IS NOT NULL RETURNING uri"), p).scalars())
    # Offloaded payloads already purged from PostgreSQL are known through their archive entry.
    uris += [u for u in conn.execute(sa.text(
        "DELETE FROM archived_payloads WHERE execution_id = ANY(:ids) RETURNING uri"), p).scalars() if u]
    for statement in (
        "DELETE FROM payloads WHERE execution_id = ANY(:ids)",
        "DELETE FROM steps WHERE execution_id = ANY(:ids)",
        "DELETE FROM step_success_keys WHERE execution_id = ANY(:ids)",
        "DELETE FROM execution_transitions WHERE execution_id = ANY(:ids)",
        "DELETE FROM execution_logs WHERE execution_id = ANY(:ids)",
        "DELETE FROM erased_payloads WHERE execution_id = ANY(:ids)",
        "DELETE FROM search_outbox WHERE execution_id = ANY(:ids)",
        "DELETE FROM otlp_exports WHERE execution_id = ANY(:ids)",
        "DELETE FROM executions WHERE execution_id = ANY(:ids)",
        "DELETE FROM execution_state WHERE execution_id = ANY(:ids)",
    ):
        conn.execute(sa.text(statement), p)
    opensearch_outbox.forget(conn, ids)  # their documents leave the search index too, in outbox order
    touched = list(conn.execute(sa.text(
        "DELETE FROM execution_archives WHERE execution_id = ANY(:ids) RETURNING archive_id"), p).scalars())
    # An event goes with its last execution; audit events stay until their own retention (seed 004).
    gone = list(conn.execute(sa.text(
        "SELECT DISTINCT e FROM unnest(CAST(:ev AS uuid[])) e WHERE NOT EXISTS "
        "(SELECT 1 FROM execution_state s WHERE s.event_id = e)"), {"ev": event_ids}).scalars())
    if gone:
        q = {"ev": gone}
        deletion.record_removals(conn, kind="retention", actor="retention", reason="end of retention",
                                 event_ids=gone)
        touched += list(conn.execute(sa.text(
            "DELETE FROM event_archives WHERE event_id = ANY(:ev) RETURNING archive_id"), q).scalars())
        for statement in ("DELETE FROM events WHERE event_id = ANY(:ev)",
                          "DELETE FROM event_status_history WHERE event_id = ANY(:ev)",
                          "DELETE FROM event_idempotency WHERE event_id = ANY(:ev)",
                          "DELETE FROM event_state WHERE event_id = ANY(:ev)"):
            conn.execute(sa.text(statement), q)
    emptied = conn.execute(sa.text(
        "SELECT archive_id, uri FROM archive_manifests m WHERE archive_id = ANY(:a) "
        "AND NOT EXISTS (SELECT 1 FROM execution_archives x WHERE x.archive_id = m.archive_id) "
        "AND NOT EXISTS (SELECT 1 FROM event_archives v WHERE v.archive_id = m.archive_id)"),
        {"a": list(set(touched))}).all()
    if emptied:
        a = {"a": [r.archive_id for r in emptied]}
        conn.execute(sa.text("DELETE FROM archive_tier_changes WHERE archive_id = ANY(:a)"), a)
        conn.execute(sa.text("DELETE FROM archive_manifests WHERE archive_id = ANY(:a)"), a)
    return list(dict.fromkeys(uris + [r.uri for r in emptied]))


def audit_cleanup(database: Database, now: datetime, opts: RetentionOptions, held: list[str],
                  report: PruneReport, tick: Progress) -> None:
    """Audit events and log lines older than the audit retention go, except under legal hold."""
    cutoff = now - timedelta(days=opts.audit_retention_days)
    for table, counter in (("execution_audit_events", "audit_events_deleted"), ("execution_logs", "logs_deleted")):
        held_row = ("EXISTS (SELECT 1 FROM execution_state s WHERE s.execution_id = t.execution_id "
                    "AND s.workflow_id = ANY(:held))")
        keep = f"NOT {held_row}"
        if opts.dry_run:
            with database.reader() as conn:
                n = conn.execute(sa.text(f'SELECT count(*) FROM {table} t WHERE "timestamp" < :c AND {keep}'),
                                 {"c": cutoff, "held": held}).scalar_one()
            setattr(report, counter, n)
            continue
        drop_partitions(database, table, cutoff, report, keep_sql=held_row, held=held)
        while True:
            with tx(database, report, "audit_cleanup") as conn:
                removed = conn.execute(sa.text(
                    f'DELETE FROM {table} WHERE (id, "timestamp") IN (SELECT id, "timestamp" FROM {table} t '
                    f'WHERE "timestamp" < :c AND {keep} LIMIT :n) RETURNING id::text, execution_id'),
                    {"c": cutoff, "held": held, "n": opts.batch_size * 4}).all()
                if table == "execution_audit_events":
                    deletion.record_keys(conn, kind="retention", actor="retention", reason="audit retention",
                                         table=table, rows=removed)
                n = len(removed)
            setattr(report, counter, getattr(report, counter) + n)
            tick("audit", n)
            if n == 0:
                break


def partitions(conn: Connection, parent: str) -> list[tuple[str, datetime]]:
    """Monthly partitions of a ledger table with the end of their range, oldest first."""
    names = conn.execute(sa.text(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = :p"), {"p": parent}).scalars().all()
    found = []
    for name in names:
        match = re.fullmatch(rf"{parent}_y(\d{{4}})m(\d{{2}})", name)
        if match:
            year, month = int(match[1]), int(match[2])
            end = datetime(year + month // 12, month % 12 + 1, 1, tzinfo=UTC)
            found.append((name, end))
    return sorted(found, key=lambda item: item[1])


def drop_partitions(database: Database, parent: str, before: datetime, report: PruneReport, *,
                    keep_sql: str, held: list[str]) -> None:
    """Drop each partition that ended before `before` and holds no row that must stay."""
    # Never by a clock moved ahead: an empty partition of the real present or future is still needed.
    before = min(before, datetime.now(UTC))
    with database.reader() as conn:
        candidates = [name for name, end in partitions(conn, parent) if end <= before]
    for name in candidates:
        if _drop_when_idle(database, parent, name, report, keep_sql=keep_sql, held=held):
            report.partitions_dropped.append(name)
            log.info("dropped partition %s", name)


def _drop_when_idle(database: Database, parent: str, name: str, report: PruneReport, *, keep_sql: str,
                    held: list[str]) -> bool:
    """Drop one partition if no row must stay, waiting only briefly for its locks; False when it stays.

    DROP TABLE takes ACCESS EXCLUSIVE on the partition and its parent, and while it waits for them every new
    query on the ledger table queues behind it: ingestion would stall for as long as the wait (956 ms once in
    the benchmark, behind another session's lock). So each try waits DROP_LOCK_WAIT_MS at most,
    and a partition still busy after DROP_TRIES is left for the next run.
    """
    for attempt in range(DROP_TRIES):
        try:
            with tx(database, report, "partition_drop", lock_timeout_ms=DROP_LOCK_WAIT_MS) as conn:
                conn.execute(sa.text(f'LOCK TABLE "{name}" IN ACCESS EXCLUSIVE MODE'))
                if conn.execute(sa.text(f'SELECT EXISTS (SELECT 1 FROM "{name}" t WHERE {keep_sql})'),
                                {"held": held}).scalar():
                    return False
                deletion.record_partition(conn, parent=parent, partition=name, actor="retention")
                conn.execute(sa.text("SELECT flowledger_drop_partition(:n)"), {"n": name})
            return True
        except sa.exc.OperationalError as exc:
            if not isinstance(exc.orig, psycopg.errors.LockNotAvailable):
                raise
            if attempt + 1 < DROP_TRIES:
                time.sleep(DROP_BACKOFF_S * 2 ** attempt)  # let the holder finish before the next short try
    log.warning("partition %s is due but stayed busy for %d short tries; the next retention run drops it",
                name, DROP_TRIES)
    report.partitions_busy.append(name)
    return False
