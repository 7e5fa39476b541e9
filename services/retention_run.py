"""What a retention run works with: policies, options, its report, timed transactions and adaptive batches."""
from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection

from services.db import Database

Progress = Callable[[str, int], None]
# The kinds of maintainer transaction a run opens, as PruneReport counts and times them.
KINDS = ("archive_registration", "expire", "tier", "audit_cleanup", "payload_purge", "partition_drop")


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
    # Due partitions left for the next run because their table stayed busy (see retention_expiry.drop_partitions).
    partitions_busy: list[str] = field(default_factory=list)
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


@contextlib.contextmanager
def tx(database: Database, report: PruneReport, kind: str, *, lock_timeout_ms: int = 5000) -> Iterator[Connection]:
    """A short maintainer transaction, timed by kind so a run can prove none was long (and say which was)."""
    started = time.perf_counter()
    with database.maintainer() as conn:
        conn.execute(sa.text(f"SET LOCAL lock_timeout = '{int(lock_timeout_ms)}ms'"))
        conn.execute(sa.text("SET LOCAL statement_timeout = '60s'"))
        yield conn
    report.timed(kind, (time.perf_counter() - started) * 1000)
