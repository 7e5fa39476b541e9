"""Retention: archive hot executions to the object store, tier archives to Glacier IR, expire, drop partitions."""
from __future__ import annotations

import contextlib
import logging
import re
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy import Connection

from services import archive_reader, archiving, deletion, opensearch
from services.db import Database
from services.payloads import PayloadConfig

log = logging.getLogger(__name__)

PARENTS = ("events", "executions", "steps", "payloads", "execution_audit_events", "execution_logs")
FAILED = ("failed", "timed_out")
Progress = Callable[[str, int], None]
# Executions in a workflow's first archive and the fewest per archive when the machine is slow:
# 250 x 20 realistic payloads still compress to ~0.5 MB, well above S3's 128 KB infrequent-access minimum.
ARCHIVE_MIN = 250
# The kinds of maintainer transaction a run opens, as PruneReport counts and times them.
KINDS = ("archive_registration", "expire", "tier", "audit_cleanup", "payload_purge", "partition_drop")

POLICIES_SQL = sa.text(
    "SELECT DISTINCT ON (workflow_id) workflow_id, retention_days, retain_on_failure, legal_hold, "
    "definition->'retention'->>'hot_days' AS hot_days FROM workflow_versions ORDER BY workflow_id, version DESC")


@dataclass(frozen=True)
class Policy:
    """How long one workflow's data stays hot, and whether and when it may be removed."""

    workflow_id: str
    hot_days: int
    retention_days: int | None = None  # None: kept forever
    retain_on_failure: bool = False
    legal_hold: bool = False


@dataclass
class RetentionOptions:
    """Knobs of one pruning run (defaults come from settings)."""

    hot_days: int = 90
    glacier_days: int = 365
    audit_retention_days: int = 30
    days: int | None = None  # --days: overrides every workflow's hot window
    workflow_id: str | None = None
    batch_size: int = 500
    # Executions per archive object, at most: 500 x 20 realistic payloads is ~10 MB raw, ~1 MB stored.
    # Registering an archive is one transaction whose time grows with its payload count: 1,000 executions
    # took 0.5 s on a quiet machine and up to 3.2 s on a loaded one (issue 9's bound is 1 s).
    archive_max_executions: int = 500
    # Archives and purge batches are sized so that each maintainer transaction takes about this long,
    # a fifth of the bound, leaving room for the stalls of a shared machine.
    target_transaction_ms: float = 200.0
    dry_run: bool = False


@dataclass
class PruneReport:
    """What a pruning run did (or, dry, would do), per workflow and tier."""

    dry_run: bool
    workflows: dict[str, dict[str, int]] = field(default_factory=dict)
    archives_written: int = 0
    archive_bytes: int = 0
    tiered_to_glacier: int = 0
    archives_deleted: int = 0
    audit_events_deleted: int = 0
    logs_deleted: int = 0
    payload_rows_deleted: int = 0
    partitions_dropped: list[str] = field(default_factory=list)
    transactions: int = 0
    longest_transaction_ms: float = 0.0
    # Per kind of transaction (see KINDS), so a long one can be traced to the step that held it.
    transactions_by_kind: dict[str, int] = field(default_factory=dict)
    longest_transaction_ms_by_kind: dict[str, float] = field(default_factory=dict)

    def count(self, workflow_id: str, key: str, n: int = 1) -> None:
        """Add n to one per-workflow counter."""
        counters = self.workflows.setdefault(workflow_id, {})
        counters[key] = counters.get(key, 0) + n

    def timed(self, kind: str, elapsed_ms: float) -> None:
        """Count one committed transaction of a kind and keep the longest, overall and per kind."""
        elapsed_ms = round(elapsed_ms, 1)
        self.transactions += 1
        self.longest_transaction_ms = max(self.longest_transaction_ms, elapsed_ms)
        self.transactions_by_kind[kind] = self.transactions_by_kind.get(kind, 0) + 1
        self.longest_transaction_ms_by_kind[kind] = max(self.longest_transaction_ms_by_kind.get(kind, 0.0), elapsed_ms)

    def as_dict(self) -> dict[str, Any]:
        """Plain data for JSON output and job_runs.detail."""
        return {k: v for k, v in self.__dict__.items()}


@dataclass
class _BatchSize:
    """A batch size steered towards a transaction time: it follows the measured rate, at most doubling at once."""

    size: int
    low: int
    high: int
    target_ms: float

    def after(self, done: int, elapsed_ms: float) -> None:
        """Resize from one transaction that handled `done` items in `elapsed_ms`."""
        if done > 0:
            wanted = int(done * self.target_ms / max(elapsed_ms, 1.0))
            self.size = max(self.low, min(self.high, 2 * self.size, wanted))


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
        _archive_workflow(database, cfg, policy, now, opts, report, tick)
        _expire_workflow(database, cfg, policy, now, opts, report, tick)
    _tier(database, cfg, now, opts, report, tick)
    held = [w for w, p in known.items() if p.legal_hold]
    if opts.workflow_id is None:
        _audit_cleanup(database, now, opts, held, report, tick)
    _purge_payloads(database, now, opts, report, tick)
    return report


@contextlib.contextmanager
def _tx(database: Database, report: PruneReport, kind: str) -> Iterator[Connection]:
    """A short maintainer transaction, timed by kind so a run can prove none was long (and say which was)."""
    started = time.perf_counter()
    with database.maintainer() as conn:
        conn.execute(sa.text("SET LOCAL lock_timeout = '5s'"))
        conn.execute(sa.text("SET LOCAL statement_timeout = '60s'"))
        yield conn
    report.timed(kind, (time.perf_counter() - started) * 1000)


def _workflows(conn: Connection, only: str | None) -> list[str]:
    if only:
        return [only]
    return list(conn.execute(sa.text(
        "SELECT DISTINCT workflow_id FROM execution_state ORDER BY workflow_id")).scalars())


def _count_all(database: Database, workflow_id: str) -> int:
    with database.reader() as conn:
        return conn.execute(sa.text("SELECT count(*) FROM execution_state WHERE workflow_id = :w"),
                            {"w": workflow_id}).scalar_one()


def _archive_workflow(database: Database, cfg: PayloadConfig, policy: Policy, now: datetime,
                      opts: RetentionOptions, report: PruneReport, tick: Progress) -> None:
    """Pack every finished, not yet archived execution past the hot window into archive objects."""
    cutoff = now - timedelta(days=policy.hot_days)
    # Executions that expire in this same run are not worth archiving first.
    expire_before = now - timedelta(days=policy.retention_days) if policy.retention_days else None
    after: tuple[datetime, UUID] | None = None
    top = opts.archive_max_executions
    # Start small: the first registration meets a cold cache; later ones grow while they stay short.
    size = _BatchSize(top if opts.dry_run else min(top, ARCHIVE_MIN), min(top, ARCHIVE_MIN), top,
                      opts.target_transaction_ms)
    while True:
        with database.reader() as conn:
            rows = conn.execute(sa.text(
                "SELECT execution_id, completed_at, status FROM execution_state WHERE workflow_id = :w "
                "AND completed_at IS NOT NULL AND completed_at < :cutoff AND archived_uri IS NULL "
                "AND (CAST(:after_at AS timestamptz) IS NULL OR (completed_at, execution_id) > (:after_at, :after_id)) "
                "ORDER BY completed_at, execution_id LIMIT :n"),
                {"w": policy.workflow_id, "cutoff": cutoff, "after_at": after[0] if after else None,
                 "after_id": after[1] if after else None, "n": size.size}).all()
        if not rows:
            return
        after = (rows[-1].completed_at, rows[-1].execution_id)
        ids = [r.execution_id for r in rows if not _expires(r, policy, expire_before)]
        report.count(policy.workflow_id, "archive_executions", len(ids))
        if not ids:
            continue
        if opts.dry_run:
            tick("archive", len(ids))
            continue
        with database.reader() as conn:
            written, manifest = archiving.write_archive(conn, cfg, workflow_id=policy.workflow_id,
                                                        execution_ids=ids, now=now)
        started = time.perf_counter()
        with _tx(database, report, "archive_registration") as conn:
            archiving.register_archive(conn, written, manifest, sha256=manifest["object_sha256"], now=now)
        size.after(len(ids), (time.perf_counter() - started) * 1000)
        report.archives_written += 1
        report.archive_bytes += written.size_bytes
        report.count(policy.workflow_id, "archive_payloads", len(written.payload_ids))
        tick("archive", len(ids))


def _expires(row: Any, policy: Policy, expire_before: datetime | None) -> bool:
    if expire_before is None or row.completed_at >= expire_before:
        return False
    return not (policy.retain_on_failure and row.status in FAILED)


def _expire_workflow(database: Database, cfg: PayloadConfig, policy: Policy, now: datetime,
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
        with _tx(database, report, "expire") as conn:
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
    opensearch.forget(conn, ids)  # their documents leave the search index too, in outbox order
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


def _tier(database: Database, cfg: PayloadConfig, now: datetime, opts: RetentionOptions,
          report: PruneReport, tick: Progress) -> None:
    """Move archives whose newest execution is older than glacier_days to GLACIER_IR."""
    with database.reader() as conn:
        rows = conn.execute(sa.text(
            "SELECT m.archive_id, m.uri, m.workflow_id, m.size_bytes, COALESCE((SELECT t.storage_class "
            "FROM archive_tier_changes t WHERE t.archive_id = m.archive_id ORDER BY t.id DESC LIMIT 1), "
            "m.storage_class) AS cls FROM archive_manifests m WHERE (m.manifest->>'max_completed_at')::timestamptz "
            "< :cutoff AND (CAST(:w AS text) IS NULL OR m.workflow_id = :w)"),
            {"cutoff": now - timedelta(days=opts.glacier_days), "w": opts.workflow_id}).all()
    for row in rows:
        if row.cls == archiving.COLD_CLASS:
            continue
        report.count(row.workflow_id or "-", "glacier_archives")
        report.count(row.workflow_id or "-", "glacier_bytes", row.size_bytes)
        if not opts.dry_run:
            cfg.store.set_storage_class(row.uri, archiving.COLD_CLASS)
            with _tx(database, report, "tier") as conn:
                conn.execute(sa.text(
                    "INSERT INTO archive_tier_changes (archive_id, storage_class, at) VALUES (:a, :c, :now)"),
                    {"a": row.archive_id, "c": archiving.COLD_CLASS, "now": now})
        report.tiered_to_glacier += 1
        tick("tier", 1)


def _audit_cleanup(database: Database, now: datetime, opts: RetentionOptions, held: list[str],
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
        _drop_partitions(database, table, cutoff, report, keep_sql=held_row, held=held)
        while True:
            with _tx(database, report, "audit_cleanup") as conn:
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
    _drop_partitions(database, "payloads", now, report, keep_sql=f"NOT ({gone})", held=[])
    for parent in ("steps", "executions", "events"):
        _drop_partitions(database, parent, now, report, keep_sql="true", held=[])
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
            with _tx(database, report, "payload_purge") as conn:
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


def _drop_partitions(database: Database, parent: str, before: datetime, report: PruneReport, *,
                     keep_sql: str, held: list[str]) -> None:
    """Drop each partition that ended before `before` and holds no row that must stay."""
    # Never by a clock moved ahead: an empty partition of the real present or future is still needed.
    before = min(before, datetime.now(UTC))
    with database.reader() as conn:
        candidates = [name for name, end in partitions(conn, parent) if end <= before]
    for name in candidates:
        with _tx(database, report, "partition_drop") as conn:
            conn.execute(sa.text(f'LOCK TABLE "{name}" IN ACCESS EXCLUSIVE MODE'))
            if conn.execute(sa.text(f'SELECT EXISTS (SELECT 1 FROM "{name}" t WHERE {keep_sql})'),
                            {"held": held}).scalar():
                continue
            deletion.record_partition(conn, parent=parent, partition=name, actor="retention")
            conn.execute(sa.text("SELECT flowledger_drop_partition(:n)"), {"n": name})
        report.partitions_dropped.append(name)
        log.info("dropped partition %s", name)
