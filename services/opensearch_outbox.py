"""The step search outbox: its switch, ordered sending to OpenSearch with saved progress, forget markers, pruning.

Step search documents reach `search_outbox` through a trigger in the step's own transaction
(migration 0005). `index_pending` sends them in id order and records progress in
`search_progress` only after OpenSearch accepted them; an OpenSearch that is down delays
indexing and loses nothing. Documents use the step id as `_id`, so a resend overwrites.
"""
from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy import Connection

from services.db import Database
from services.opensearch_client import IndexUnavailable, OpenSearchIndex

log = logging.getLogger(__name__)

CONSUMER = "opensearch"


@dataclass
class IndexRun:
    """What one pass over the outbox did."""

    sent: int = 0
    batches: int = 0
    rejected: int = 0
    last_id: int = 0
    busy: bool = False
    held_back: bool = False
    error: str | None = None


def outbox_enabled(conn: Connection) -> bool:
    """Whether steps are currently written to the search outbox."""
    return bool(conn.execute(sa.text(
        "SELECT COALESCE((SELECT enabled FROM search_outbox_switch ORDER BY id DESC LIMIT 1), false)")).scalar())


def set_outbox(conn: Connection, *, enabled: bool, reason: str) -> bool:
    """Turn the step outbox on or off by appending a switch row; returns True when the state changed."""
    if outbox_enabled(conn) == enabled:
        return False
    conn.execute(sa.text("INSERT INTO search_outbox_switch (enabled, reason) VALUES (:e, :r)"),
                 {"e": enabled, "r": reason})
    return True


def index_pending(database: Database, index: OpenSearchIndex, *, consumer: str = CONSUMER,
                  settle_timeout: float = 5.0, clock: Callable[[], float] = time.monotonic) -> IndexRun:
    """Send every settled outbox row after the consumer's progress to _bulk, in id order, batch by batch."""
    run = IndexRun()
    with database.engine("writer").connect() as conn:
        if not conn.execute(sa.text("SELECT pg_try_advisory_lock(hashtext(:k))"), {"k": _lock_key(consumer)}).scalar():
            conn.commit()
            return IndexRun(busy=True)
        try:
            run.last_id = _progress(conn, consumer)
            horizon = _settled_horizon(conn, settle_timeout, index.sleep, clock)
            if horizon is None:
                run.held_back = True
                return run
            if horizon > run.last_id:
                index.ensure_template()
            while run.last_id < horizon:
                rows = conn.execute(sa.text(
                    "SELECT id, doc FROM search_outbox WHERE id > :last AND id <= :h ORDER BY id LIMIT :n"),
                    {"last": run.last_id, "h": horizon, "n": index.config.batch_size}).all()
                conn.commit()
                if not rows:
                    break
                run.rejected += _send(index, [r.doc for r in rows])
                _save_progress(conn, consumer, rows[-1].id)
                run.sent, run.batches, run.last_id = run.sent + len(rows), run.batches + 1, rows[-1].id
        except IndexUnavailable as exc:
            run.error = str(exc)
            log.warning("search outbox held at id %d: %s", run.last_id, exc)
        finally:
            conn.rollback()
            conn.execute(sa.text("SELECT pg_advisory_unlock(hashtext(:k))"), {"k": _lock_key(consumer)})
            conn.commit()
    if run.sent:
        prune_outbox(database, consumer=consumer)  # what OpenSearch confirmed needs no second copy here
    return run


def forget(conn: Connection, execution_ids: Sequence[UUID]) -> int:
    """Queue the removal of these executions' documents from the index (maintainer transaction; erasure and
    deletion). A no-op while the outbox is off; returns how many markers were queued."""
    if not execution_ids:
        return 0
    return conn.execute(sa.text("SELECT flowledger_search_forget(CAST(:ids AS uuid[]))"),
                        {"ids": [str(i) for i in execution_ids]}).scalar_one()


def prune_outbox(database: Database, *, consumer: str = CONSUMER, batch: int = 10_000) -> int:
    """Delete outbox rows the indexer has confirmed (up to its saved progress); returns how many."""
    removed = 0
    while True:
        with database.maintainer() as conn:
            done = conn.execute(sa.text(
                "DELETE FROM search_outbox WHERE id IN (SELECT id FROM search_outbox WHERE id <= "
                "(SELECT last_id FROM search_progress WHERE consumer = :c) ORDER BY id LIMIT :n)"),
                {"c": consumer, "n": batch}).rowcount
        removed += done
        if done < batch:
            return removed


def _send(index: OpenSearchIndex, docs: list[dict[str, Any]]) -> int:
    """Index docs in outbox order; each run of forget markers goes after what came before it. Returns rejections."""
    rejected = 0
    for forget_run, run in itertools.groupby(docs, key=lambda d: d.get("op") == "forget"):
        if forget_run:
            index.forget([d["execution_id"] for d in run])
        else:
            rejected += index.bulk(list(run))
    return rejected


def _settled_horizon(conn: Connection, timeout: float, sleep: Callable[[float], None],
                     clock: Callable[[], float]) -> int | None:
    """The highest outbox id below which no transaction can still commit a row, or None if not yet known.

    Ids are drawn before commit, so a committed id 10 can be visible while id 9 is still in flight.
    Every transaction that drew an id <= H (read first) had its xid before the snapshot taken
    next; once the oldest running xid passes that snapshot's xmax, all of them have ended.
    """
    seq = conn.execute(sa.text("SELECT last_value, is_called FROM search_outbox_id_seq")).one()
    horizon = seq.last_value if seq.is_called else 0
    xmax = conn.execute(sa.text("SELECT pg_snapshot_xmax(pg_current_snapshot())::text")).scalar_one()
    conn.commit()
    deadline = clock() + timeout
    delay = 0.01
    while True:
        settled = conn.execute(sa.text("SELECT pg_snapshot_xmin(pg_current_snapshot()) >= CAST(:x AS xid8)"),
                               {"x": xmax}).scalar_one()
        conn.commit()
        if settled:
            return horizon
        if clock() >= deadline:
            return None
        sleep(delay)
        delay = min(delay * 2, 0.5)


def _progress(conn: Connection, consumer: str) -> int:
    last = conn.execute(sa.text("SELECT last_id FROM search_progress WHERE consumer = :c"), {"c": consumer}).scalar()
    conn.commit()
    return int(last or 0)


def _save_progress(conn: Connection, consumer: str, last_id: int) -> None:
    conn.execute(sa.text(
        "INSERT INTO search_progress (consumer, last_id) VALUES (:c, :id) ON CONFLICT (consumer) "
        "DO UPDATE SET last_id = EXCLUDED.last_id, updated_at = now()"), {"c": consumer, "id": last_id})
    conn.commit()


def _lock_key(consumer: str) -> str:
    return f"flowledger-search-outbox:{consumer}"
