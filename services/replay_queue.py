"""The replay queue in PostgreSQL: leased claims with FOR UPDATE SKIP LOCKED, several workers, no lost items.

A claim is a lease: an item whose worker died stays 'running' only until claimed_at + lease, then any worker
takes it again. A live worker renews its lease while it works, however long the item takes; one that still
loses it (stalled past the lease) does not count the item, the worker that took it over does.
Re-processing is safe because replay execution ids are derived from (replay, event, workflow) and every
step is guarded by its idempotency key.
"""
from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy import Connection

from services import router
from services.db import Database

log = logging.getLogger(__name__)
MAX_CLAIMS = 5

CLAIM_SQL = sa.text("""
UPDATE replay_items i SET state = 'running', claimed_by = :worker, claimed_at = clock_timestamp(),
       attempts = i.attempts + 1
FROM (SELECT id FROM replay_items
      WHERE (CAST(:replay AS uuid) IS NULL OR replay_id = :replay)
        AND (state = 'queued'
             OR (state = 'running' AND claimed_at < clock_timestamp() - make_interval(secs => :lease)))
      ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED) c
WHERE i.id = c.id
RETURNING i.id, i.replay_id, i.event_id, i.attempts
""")


@dataclass(frozen=True)
class Item:
    """One claimed replay item."""

    id: int
    replay_id: UUID
    event_id: UUID
    attempts: int


def claim(conn: Connection, *, worker: str, lease_seconds: float, replay_id: UUID | None = None) -> Item | None:
    """Lease the oldest queued item (or one whose lease expired), skipping rows other workers hold."""
    row = conn.execute(CLAIM_SQL, {"worker": worker, "lease": lease_seconds, "replay": replay_id}).one_or_none()
    return Item(row.id, row.replay_id, row.event_id, row.attempts) if row else None


def finish(conn: Connection, item: Item, *, worker: str, state: str, execution_ids: list[UUID],
           error: str | None = None) -> bool:
    """Mark a claimed item done or failed; False when the lease was lost to another worker meanwhile."""
    return conn.execute(sa.text(
        "UPDATE replay_items SET state = :s, finished_at = clock_timestamp(), execution_ids = CAST(:ids AS uuid[]), "
        "error = :err WHERE id = :id AND claimed_by = :w AND state = 'running'"),
        {"s": state, "ids": [str(i) for i in execution_ids], "err": error, "id": item.id, "w": worker}).rowcount == 1


def outstanding(conn: Connection, replay_id: UUID | None = None) -> int:
    """Items queued or running (in a replay, or anywhere)."""
    return conn.execute(sa.text(
        "SELECT count(*) FROM replay_items WHERE state IN ('queued', 'running') "
        "AND (CAST(:r AS uuid) IS NULL OR replay_id = :r)"), {"r": replay_id}).scalar_one()


RENEW_SQL = sa.text("UPDATE replay_items SET claimed_at = clock_timestamp() "
                    "WHERE id = :id AND claimed_by = :w AND state = 'running'")


def _renew_lease(database: Database, item: Item, *, worker: str, every: float, done: threading.Event) -> None:
    """Keep a live worker's lease fresh while it works, so only a dead worker's item is taken over."""
    while not done.wait(every):
        try:
            with database.writer() as conn:
                if conn.execute(RENEW_SQL, {"id": item.id, "w": worker}).rowcount == 0:
                    return  # taken over already: finish() will say so
        except sa.exc.SQLAlchemyError:
            log.warning("replay worker %s could not renew its lease on item %s", worker, item.id, exc_info=True)


def process(database: Database, runner: Any, item: Item, *, worker: str, lease_seconds: float = 300) -> str:
    """Resubmit one item's event to the router and run its executions in this thread; returns done/failed,
    or "lost" when the lease ran out meanwhile and another worker had taken the item (it counts there)."""
    ids: list[UUID] = []
    done = threading.Event()
    threading.Thread(target=_renew_lease, args=(database, item), daemon=True, name=f"{worker}-lease",
                     kwargs={"worker": worker, "every": max(lease_seconds / 3, 0.1), "done": done}).start()
    try:
        if item.attempts > MAX_CLAIMS:
            raise RuntimeError(f"given up after {MAX_CLAIMS} claims")
        with database.writer() as conn:
            selection = conn.execute(sa.text("SELECT selection FROM replays WHERE replay_id = :r"),
                                     {"r": item.replay_id}).scalar_one()
            event = router.stored_event(conn, item.event_id)
            ids = router.route(conn, runner.flow.payloads, event_id=item.event_id,
                               source_system=event["source_system"], event_type=event["event_type"],
                               payload=event["payload"], replay_id=item.replay_id,
                               workflow_id=selection.get("workflow_id"))
        if not ids:
            raise RuntimeError("no workflow matches the event any more")
        for execution_id in ids:  # all of them are this worker's from now on, not only the one running
            runner.claims.claim(execution_id)
        try:
            statuses = [runner.run_inline(execution_id) for execution_id in ids]
        finally:
            for execution_id in ids:
                runner.claims.release(execution_id)
        bad = [s for s in statuses if s not in ("completed", None)]
        state, error = ("failed", f"replayed execution(s) ended {', '.join(bad)}") if bad else ("done", None)
    except Exception as exc:  # one bad item must not stop the worker
        log.exception("replay item %s failed", item.id)
        state, error = "failed", f"{type(exc).__name__}: {exc}"
    finally:
        done.set()
    with database.writer() as conn:
        kept = finish(conn, item, worker=worker, state=state, execution_ids=ids, error=error)
    return state if kept else "lost"


def work(database: Database, runner: Any, *, replay_id: UUID | None = None, lease_seconds: float = 300,
         poll_seconds: float = 0.5, stop: threading.Event | None = None, name: str | None = None,
         on_item: Callable[[str], None] | None = None) -> int:
    """Process items until none is queued or leased; returns how many this worker finished."""
    worker = name or f"replay-{uuid.uuid4().hex[:8]}"
    stop = stop or threading.Event()
    handled = 0
    while not stop.is_set():
        try:
            with database.writer() as conn:
                item = claim(conn, worker=worker, lease_seconds=lease_seconds, replay_id=replay_id)
                left = outstanding(conn, replay_id) if item is None else 1
        except sa.exc.SQLAlchemyError:
            # Database gone (shutdown, failover): stop; items left behind return to the queue by lease.
            log.warning("replay worker %s stops: the queue cannot be read", worker, exc_info=True)
            break
        if item is None:
            if left == 0:
                break
            # Items leased by others: wait for them to finish or for their leases to expire.
            stop.wait(poll_seconds)
            continue
        state = process(database, runner, item, worker=worker, lease_seconds=lease_seconds)
        if state == "lost":
            continue
        handled += 1
        if on_item:
            on_item(state)
    return handled


def run_workers(database: Database, runner: Any, *, workers: int = 4, replay_id: UUID | None = None,
                lease_seconds: float = 300, poll_seconds: float = 0.5,
                on_item: Callable[[str], None] | None = None) -> int:
    """Run several workers in threads until the queue (or one replay) is drained; returns items finished."""
    counts: list[int] = []
    lock = threading.Lock()

    def one() -> None:
        n = work(database, runner, replay_id=replay_id, lease_seconds=lease_seconds, poll_seconds=poll_seconds,
                 on_item=on_item)
        with lock:
            counts.append(n)

    threads = [threading.Thread(target=one, name=f"replay-worker-{i}", daemon=True) for i in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(counts)


class Workers:
    """Background replay workers of a server process, started on demand and ending when the queue drains."""

    def __init__(self, database: Database, runner: Any, *, count: int, lease_seconds: float) -> None:
        self.database, self.runner, self.count, self.lease = database, runner, count, lease_seconds
        self.stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()

    def kick(self) -> None:
        """Make sure count workers are alive to drain the queue."""
        with self._lock:
            self._threads = [t for t in self._threads if t.is_alive()]
            for _ in range(self.count - len(self._threads)):
                thread = threading.Thread(target=work, daemon=True, name="replay-worker", kwargs={
                    "database": self.database, "runner": self.runner, "lease_seconds": self.lease,
                    "stop": self.stop})
                thread.start()
                self._threads.append(thread)

    def shutdown(self) -> None:
        """Ask workers to stop after their current item; unfinished items return to the queue by lease."""
        self.stop.set()
