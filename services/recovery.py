"""Executions whose process stopped mid-run: claimed while their runner lives, swept once it is gone.

The runner keeps its queue and its waits in memory (a wait step does not hold a worker), so a
process that restarts or crashes takes them along and its executions would show 'running' for
ever. Each runner therefore holds a session-level advisory lock per execution it owns (queued,
running or waiting) on one connection of its own; PostgreSQL drops the locks with that connection
when the process dies. The sweeper (a scheduled job) ends every unfinished execution of the built-in
runner that has been quiet for a grace period and that no live process claims: failed, reason
'interrupted', its event dead-lettered, so a replay finishes it without re-running the steps that
already succeeded.
"""
from __future__ import annotations

import collections
import logging
import threading
from datetime import datetime, timedelta
from uuid import UUID

import sqlalchemy as sa

from services import flow, recording
from services.db import Database
from services.errors import Conflict

log = logging.getLogger(__name__)

CLAIM_CLASS = 0x464C5258  # the first key of the two-key advisory locks that claim executions ("FLRX")
GRACE = timedelta(minutes=2)  # a claim is taken just after the execution is recorded: never sweep younger
INTERRUPTED = ("interrupted: the Flowledger process running this execution stopped before it ended (restart or "
               "crash). Replay its event to finish it; steps that succeeded are not run again.")
_HELD = sa.text("SELECT objid::bigint FROM pg_locks WHERE locktype = 'advisory' AND classid = :c AND objsubid = 2 "
                "AND granted")


def claim_key(execution_id: UUID) -> int:
    """The second advisory-lock key of an execution's claim: 31 bits of its id."""
    return int.from_bytes(execution_id.bytes[:4], "big") >> 1


class Claims:
    """The executions this process owns, as advisory locks on one autocommit connection.

    Never raises: losing the connection must not fail a run. A heartbeat thread reconnects and takes
    the locks again, well inside GRACE.
    """

    def __init__(self, database: Database, *, heartbeat_seconds: float = 15) -> None:
        self.database = database
        self.heartbeat_seconds = heartbeat_seconds
        self._counts: collections.Counter[int] = collections.Counter()
        self._conn: sa.Connection | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def claim(self, execution_id: UUID) -> None:
        """Own the execution (counted: claim and release in pairs)."""
        key = claim_key(execution_id)
        with self._lock:
            self._counts[key] += 1
            if self._counts[key] == 1:
                self._call("SELECT pg_try_advisory_lock(:c, :k)", key)
            if self._thread is None:
                self._thread = threading.Thread(target=self._heartbeat, name="flowledger-claims", daemon=True)
                self._thread.start()

    def release(self, execution_id: UUID) -> None:
        """Give up one claim of the execution; the lock goes with the last one."""
        key = claim_key(execution_id)
        with self._lock:
            self._counts[key] -= 1
            if self._counts[key] <= 0:
                del self._counts[key]
                self._call("SELECT pg_advisory_unlock(:c, :k)", key)

    def close(self) -> None:
        """Stop the heartbeat and close the connection (every claim is released)."""
        self._stop.set()
        with self._lock:
            self._drop()

    def _call(self, sql: str, key: int) -> None:
        try:
            if self._conn is None:
                self._connect()
            else:
                self._conn.execute(sa.text(sql), {"c": CLAIM_CLASS, "k": key})
        except sa.exc.DBAPIError as exc:
            log.warning("execution claims lost their connection (%s); the heartbeat takes them again", exc.orig)
            self._drop()

    def _connect(self) -> None:
        """Open the connection and take a lock for every execution still owned."""
        conn = self.database.engine("writer").connect().execution_options(isolation_level="AUTOCOMMIT")
        self._conn = conn
        for key in self._counts:
            conn.execute(sa.text("SELECT pg_try_advisory_lock(:c, :k)"), {"c": CLAIM_CLASS, "k": key})

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.invalidate()  # never hand a lock-holding connection back to the pool
                conn.close()
            except sa.exc.DBAPIError:
                pass

    def _heartbeat(self) -> None:
        while not self._stop.wait(self.heartbeat_seconds):
            with self._lock:
                if not self._counts:
                    continue
                try:
                    if self._conn is None:
                        self._connect()
                    else:
                        self._conn.execute(sa.text("SELECT 1"))
                except sa.exc.DBAPIError as exc:
                    log.warning("execution claims could not reach the database: %s", exc.orig)
                    self._drop()


def sweep(database: Database, *, now: datetime, grace: timedelta = GRACE) -> list[UUID]:
    """End the unclaimed, quiet, unfinished executions of the built-in runner; returns their ids."""
    with database.writer() as conn:
        rows = conn.execute(sa.text(
            "SELECT s.execution_id, e.event_id FROM execution_state s "
            "JOIN executions e ON e.execution_id = s.execution_id AND e.created_at = s.created_at "
            "WHERE s.status IN ('pending', 'running') AND e.engine = 'flowledger' AND s.updated_at < :quiet "
            # A bulk replay's executions belong to their queue item while it is queued or running: its lease
            # hands them to another worker, which finishes them (services/replay_queue.py).
            "AND NOT EXISTS (SELECT 1 FROM replay_items i WHERE i.replay_id = e.replay_id "
            "AND i.event_id = e.event_id AND i.state IN ('queued', 'running'))"),
            {"quiet": now - grace}).all()
    swept = []
    for row in rows:
        with database.writer() as conn:
            # Checked again per execution: a live runner may have claimed it since the list was read.
            if claim_key(row.execution_id) in set(conn.execute(_HELD, {"c": CLAIM_CLASS}).scalars()):
                continue
            try:
                recording.finish_execution(conn, execution_id=row.execution_id, status="failed", at=now,
                                           error_message=INTERRUPTED, reason="interrupted")
            except Conflict:  # it ended on its own meanwhile
                continue
            if row.event_id is not None:
                flow.settle_event(conn, row.event_id)
        log.warning("execution %s was interrupted (its process is gone); marked failed for replay", row.execution_id)
        swept.append(row.execution_id)
    return swept
