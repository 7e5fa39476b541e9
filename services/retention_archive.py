"""Retention's archive stages: pack executions past the hot window into archive objects, tier old ones to Glacier IR."""
from __future__ import annotations

import time
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

import sqlalchemy as sa

from services import archiving
from services.db import Database
from services.payloads import PayloadConfig
from services.retention_run import Policy, Progress, PruneReport, RetentionOptions, _BatchSize, tx

FAILED = ("failed", "timed_out")
# Executions in a workflow's first archive and the fewest per archive when the machine is slow:
# 250 x 20 realistic payloads still compress to ~0.5 MB, well above S3's 128 KB infrequent-access minimum.
ARCHIVE_MIN = 250


def archive_workflow(database: Database, cfg: PayloadConfig, policy: Policy, now: datetime,
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
        with tx(database, report, "archive_registration") as conn:
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


def tier(database: Database, cfg: PayloadConfig, now: datetime, opts: RetentionOptions,
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
            with tx(database, report, "tier") as conn:
                conn.execute(sa.text(
                    "INSERT INTO archive_tier_changes (archive_id, storage_class, at) VALUES (:a, :c, :now)"),
                    {"a": row.archive_id, "c": archiving.COLD_CLASS, "now": now})
        report.tiered_to_glacier += 1
        tick("tier", 1)
