"""Whether PostgreSQL accepts as many connections as `flowledger serve` may open, checked before it starts.

Each gunicorn worker keeps its own pools: reader (dashboard and API reads), writer, and the ingestion
pool (writer in autocommit), each holding up to threads + 2 connections open once a burst has used
them, plus the scheduler's leader lock and job connections. With FLOWLEDGER_WORKERS=4 and mixed
webhook and API load, 79 connections were open; the embedded server allows 100 (less 3 for
superusers), so a fifth worker would have started failing requests with "too many clients". The
embedded server is raised to fit at start (ALTER SYSTEM and a restart of the server this process
started); an external server gets a warning naming both numbers, since its limit is the DBA's.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import sqlalchemy as sa

from app.runtime import Runtime, database_for
from app.settings import Settings

REQUEST_POOLS = 3  # reader, writer and ingestion pools, each kept up to threads + 2 connections
SCHEDULER_CONNECTIONS = 4  # per worker: the leader lock and the leader's job connections
SERVE_PROCESS = 2  # the serve process itself: the admin login used for migrations and this check
EMBEDDED_MAX = 1000  # the most this raises the embedded server to; past that, the sizing itself is the problem


@dataclass(frozen=True)
class Budget:
    """Connections serve may open against what the server accepts from non-superusers."""

    needed: int
    allowed: int
    max_connections: int

    @property
    def fits(self) -> bool:
        return self.needed <= self.allowed


def needed(settings: Settings) -> int:
    """The most connections serve's workers keep open at once with these settings."""
    per_worker = REQUEST_POOLS * (settings.threads + 2) + SCHEDULER_CONNECTIONS
    return settings.workers * per_worker + SERVE_PROCESS


def measure(runtime: Runtime) -> Budget:
    """The budget for runtime's settings against its server's current limits."""
    with runtime.database.admin() as conn:
        row = conn.execute(sa.text(
            "SELECT current_setting('max_connections')::int, "
            "current_setting('superuser_reserved_connections')::int, "
            "COALESCE(current_setting('reserved_connections', true), '0')::int")).one()
    max_connections, superuser, reserved = row
    return Budget(needed(runtime.settings), max_connections - superuser - reserved, max_connections)


def ensure(runtime: Runtime, say: Callable[[str], None]) -> Budget:
    """Raise an embedded server's max_connections to fit the workers; warn about an external one."""
    budget = measure(runtime)
    if budget.fits:
        return budget
    settings = runtime.settings
    sizing = f"FLOWLEDGER_WORKERS={settings.workers} x FLOWLEDGER_THREADS={settings.threads}"
    reserve = budget.max_connections - budget.allowed
    target = int(math.ceil((budget.needed + reserve + 10) / 50.0) * 50)
    if runtime.embedded is None or target > EMBEDDED_MAX:
        say(f"flowledger: warning: {sizing} may keep up to {budget.needed} connections open, but the database "
            f"accepts {budget.allowed} (max_connections {budget.max_connections}); requests beyond that fail. "
            + ("Raise max_connections on the server, or lower" if runtime.embedded is None else "Lower")
            + " FLOWLEDGER_WORKERS or FLOWLEDGER_THREADS.")
        return budget
    with runtime.database.autocommit("admin") as conn:  # ALTER SYSTEM refuses to run in a transaction
        conn.execute(sa.text(f"ALTER SYSTEM SET max_connections = {target}"))
    runtime.database.dispose()
    runtime.embedded.stop()
    url = runtime.embedded.start()
    if url != runtime.database.admin_url:
        runtime.database = database_for(settings, url)
    after = measure(runtime)
    if after.fits:
        say(f"flowledger: embedded PostgreSQL now accepts {after.max_connections} connections "
            f"(was {budget.max_connections}) for {sizing}")
    else:  # another process still holds the server open, so it did not restart
        say(f"flowledger: warning: {sizing} may keep up to {budget.needed} connections open; the embedded "
            f"database accepts {after.allowed} until it restarts with max_connections {target}. Stop every "
            "flowledger process using this data directory and start serve again.")
    return after
