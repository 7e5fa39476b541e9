"""The job runner: each scheduled slot of a job runs once across processes; one leader runs the scheduler."""
from __future__ import annotations

import json
import logging
import os
import socket
import threading
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection

from services.db import Database

log = logging.getLogger(__name__)

LEADER_KEY = 0x466C6F77  # "Flow": the session-level lock the scheduler leader holds


@dataclass(frozen=True)
class JobOutcome:
    """What one attempt to run a job slot did."""

    job: str
    slot: datetime
    ran: bool
    status: str
    detail: dict[str, Any]


def job_lock_key(job: str) -> int:
    """A stable 31-bit advisory lock key for a job name."""
    return zlib.crc32(f"flowledger-job:{job}".encode()) & 0x7FFFFFFF


def slot_for(now: datetime, interval: timedelta) -> datetime:
    """The start of the interval slot that contains now (slots are aligned to the Unix epoch)."""
    seconds = int(interval.total_seconds())
    epoch = int(now.timestamp())
    return datetime.fromtimestamp(epoch - epoch % seconds, UTC)


def run_job(database: Database, job: str, fn: Callable[[], dict[str, Any] | None], *,
            slot: datetime, wait_seconds: float = 60) -> JobOutcome:
    """Run fn for (job, slot) once: wait for the job's lock, then skip if any process already ran that slot."""
    # A dedicated connection holds the session-level advisory lock for the whole run, while the
    # job itself uses short transactions of its own. Waiting (rather than giving up at once) matters:
    # a process that gave up while another ran the previous slot would leave this slot to nobody.
    with database.engine("writer").connect() as lock_conn:
        lock_conn.execute(sa.text(f"SET lock_timeout = '{max(1, int(wait_seconds * 1000))}ms'"))
        try:
            lock_conn.execute(sa.text("SELECT pg_advisory_lock(:k)"), {"k": job_lock_key(job)})
        except sa.exc.OperationalError:
            lock_conn.rollback()
            return JobOutcome(job, slot, False, "locked", {})
        lock_conn.commit()
        try:
            return _run_slot(database, job, fn, slot)
        finally:
            lock_conn.execute(sa.text("SELECT pg_advisory_unlock(:k)"), {"k": job_lock_key(job)})
            lock_conn.execute(sa.text("RESET lock_timeout"))
            lock_conn.commit()


def runner_id() -> str:
    """Who ran a slot, as recorded in job_runs.host: hostname and process id (replicas often share a host)."""
    return f"{socket.gethostname()}:{os.getpid()}"


def _run_slot(database: Database, job: str, fn: Callable[[], dict[str, Any] | None], slot: datetime) -> JobOutcome:
    with database.writer() as conn:
        run_id = conn.execute(sa.text(
            "INSERT INTO job_runs (job, slot, host) VALUES (:j, :s, :h) ON CONFLICT (job, slot) DO NOTHING "
            "RETURNING id"), {"j": job, "s": slot, "h": runner_id()}).scalar()
        taken_over = None if run_id is not None else _take_over(conn, job, slot)
        _mark_abandoned(conn, job, slot)
    if run_id is None and taken_over is None:
        return JobOutcome(job, slot, False, "already-ran", {})
    run_id, base = (taken_over[0], {"taken_over_from": taken_over[1]}) if taken_over else (run_id, {})
    status, detail = "succeeded", {}
    try:
        detail = {**base, **(fn() or {})}
    except Exception as exc:  # a failed job is recorded and the scheduler carries on with the others
        log.exception("job %s (slot %s) failed", job, slot.isoformat())
        status, detail = "failed", {**base, "error": f"{type(exc).__name__}: {exc}"[:2000]}
    with database.writer() as conn:
        conn.execute(sa.text(
            "UPDATE job_runs SET finished_at = clock_timestamp(), status = :st, detail = CAST(:d AS jsonb) "
            "WHERE id = :id"), {"st": status, "d": json.dumps(detail, default=str), "id": run_id})
    return JobOutcome(job, slot, True, status, detail)


def _take_over(conn: Connection, job: str, slot: datetime) -> tuple[int, str] | None:
    """(run id, who had it) when the slot's recorded run never finished: its runner died mid-run.

    Only called while holding the job's advisory lock, which every runner holds for its whole run:
    a row still 'running' then belongs to a process that is gone (its lock went with its connection),
    so the slot is run again rather than left unfinished for good.
    """
    row = conn.execute(sa.text(
        "WITH gone AS (SELECT id, host FROM job_runs WHERE job = :j AND slot = :s AND status = 'running' "
        "AND finished_at IS NULL FOR UPDATE) "
        "UPDATE job_runs r SET host = :h, started_at = clock_timestamp() FROM gone WHERE r.id = gone.id "
        "RETURNING r.id, gone.host"),
        {"j": job, "s": slot, "h": runner_id()}).one_or_none()
    if row is None:
        return None
    log.warning("job %s slot %s was left running by %s, which is gone; running it again", job,
                slot.isoformat(), row[1])
    return row[0], row[1]


def _mark_abandoned(conn: Connection, job: str, slot: datetime) -> None:
    """Close the job's earlier runs whose process died mid-run (same reasoning as _take_over), so the
    history says 'abandoned' instead of showing them running for ever. Their work is not redone: each
    slot of an interval job handles whatever is pending, the one running now included."""
    gone = conn.execute(sa.text(
        "UPDATE job_runs SET status = 'abandoned', finished_at = clock_timestamp(), "
        "detail = detail || jsonb_build_object('abandoned_by', host, 'noticed_by', CAST(:h AS text)) "
        "WHERE job = :j AND slot <> :s AND status = 'running' AND finished_at IS NULL RETURNING slot, host"),
        {"j": job, "s": slot, "h": runner_id()}).all()
    for row in gone:
        log.warning("job %s slot %s was left running by %s, which is gone; marked abandoned", job,
                    row.slot.isoformat(), row.host)


def last_runs(conn: Connection) -> list[dict[str, Any]]:
    """The most recent run of every job, for `flowledger status`."""
    return [dict(r) for r in conn.execute(sa.text(
        "SELECT DISTINCT ON (job) job, slot, started_at, finished_at, status, host, detail FROM job_runs "
        "ORDER BY job, started_at DESC")).mappings()]


def runs_of(conn: Connection, job: str) -> list[dict[str, Any]]:
    """Every recorded run of one job, oldest first."""
    return [dict(r) for r in conn.execute(sa.text(
        "SELECT id, slot, started_at, finished_at, status, host, detail FROM job_runs WHERE job = :j "
        "ORDER BY slot, id"), {"j": job}).mappings()]


class Leader:
    """Holds the scheduler leadership: a session-level advisory lock on a dedicated connection.

    The lock lives as long as the connection: when the leader process dies or its connection
    breaks, PostgreSQL releases the lock and the next `poll()` elsewhere takes over.
    """

    def __init__(self, database: Database, key: int = LEADER_KEY) -> None:
        self.database = database
        self.key = key
        self._conn: sa.Connection | None = None
        self._lock = threading.Lock()

    @property
    def is_leader(self) -> bool:
        """True while this process holds the lock on a live connection."""
        return self._conn is not None

    def poll(self) -> bool:
        """Check the held lock is still alive, or try to take it; returns leadership."""
        with self._lock:
            if self._conn is not None:
                try:
                    self._conn.execute(sa.text("SELECT 1"))
                    self._conn.commit()
                    return True
                except sa.exc.DBAPIError:
                    log.warning("scheduler leader connection lost; leadership released")
                    self._discard()
            conn = self.database.engine("writer").connect()
            try:
                got = conn.execute(sa.text("SELECT pg_try_advisory_lock(:k)"), {"k": self.key}).scalar()
                conn.commit()
            except sa.exc.DBAPIError:
                conn.close()
                return False
            if got:
                self._conn = conn
                log.info("this process is now the scheduler leader")
                return True
            conn.close()
            return False

    def release(self) -> None:
        """Give up leadership (unlock and close the connection)."""
        with self._lock:
            if self._conn is not None:
                try:
                    self._conn.execute(sa.text("SELECT pg_advisory_unlock(:k)"), {"k": self.key})
                    self._conn.commit()
                except sa.exc.DBAPIError:
                    pass
                self._discard()

    def _discard(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.invalidate()  # never return a lock-holding connection to the pool
                conn.close()
            except sa.exc.DBAPIError:
                pass
