"""Dashboard and API users: argon2id password hashes, roles, disabling, throttled password checks."""
from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

import sqlalchemy as sa
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import Connection

from services import authstate
from services.errors import Conflict, InvalidInput, NotFound, RateLimited

ROLES = ("viewer", "operator", "admin")
USERNAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")
MIN_PASSWORD = 10
# argon2id (memory-hard) with argon2-cffi's RFC 9106 low-memory profile: 64 MiB, 3 passes.
_hasher = PasswordHasher()
# A hash to verify against for unknown users, so timing does not reveal which usernames exist.
_DUMMY_HASH = _hasher.hash("flowledger-no-such-user")


@dataclass(frozen=True)
class User:
    """A user as the edges see it (never the password hash)."""

    user_id: UUID
    username: str
    role: str
    disabled: bool
    session_epoch: int
    created_at: datetime
    last_login_at: datetime | None

    def public(self) -> dict[str, Any]:
        """The fields an admin listing shows."""
        return {"user_id": str(self.user_id), "username": self.username, "role": self.role,
                "disabled": self.disabled, "created_at": self.created_at, "last_login_at": self.last_login_at}


_COLUMNS = "user_id, username, role, disabled, session_epoch, created_at, last_login_at"


def role_at_least(role: str | None, needed: str) -> bool:
    """True when role ranks at or above needed (viewer < operator < admin)."""
    return role in ROLES and ROLES.index(role) >= ROLES.index(needed)


def hash_password(password: str) -> str:
    """An argon2id hash of password."""
    return _hasher.hash(password)


def create_user(conn: Connection, *, username: str, password: str, role: str) -> User:
    """Insert a user; the username must be new and the password at least MIN_PASSWORD characters."""
    authstate.changed()
    problems = _check(username=username, password=password, role=role)
    if problems:
        raise InvalidInput(problems[0], problems)
    exists = conn.execute(sa.text("SELECT 1 FROM users WHERE lower(username) = lower(:u)"), {"u": username}).first()
    if exists:
        raise Conflict(f"user {username!r} already exists")
    row = conn.execute(sa.text(
        f"INSERT INTO users (user_id, username, password_hash, role) VALUES (:id, :u, :h, :r) RETURNING {_COLUMNS}"),
        {"id": uuid.uuid4(), "u": username, "h": hash_password(password), "r": role}).mappings().one()
    return User(**row)


def get_user(conn: Connection, user_id: UUID) -> User | None:
    """A user by id, or None."""
    row = conn.execute(sa.text(f"SELECT {_COLUMNS} FROM users WHERE user_id = :id"), {"id": user_id}).mappings().first()
    return User(**row) if row else None


def find_user(conn: Connection, username: str) -> User:
    """A user by name (case-insensitive) or NotFound."""
    row = conn.execute(sa.text(f"SELECT {_COLUMNS} FROM users WHERE lower(username) = lower(:u)"),
                       {"u": username}).mappings().first()
    if row is None:
        raise NotFound(f"user {username!r} not found")
    return User(**row)


def list_users(conn: Connection) -> list[User]:
    """Every user, by name."""
    rows = conn.execute(sa.text(f"SELECT {_COLUMNS} FROM users ORDER BY lower(username)")).mappings().all()
    return [User(**row) for row in rows]


def set_role(conn: Connection, *, username: str, role: str, now: datetime) -> User:
    """Change a user's role; existing sessions pick it up on their next request."""
    if role not in ROLES:
        raise InvalidInput(f"role must be one of {', '.join(ROLES)}")
    user = find_user(conn, username)
    conn.execute(sa.text("UPDATE users SET role = :r, updated_at = :now WHERE user_id = :id"),
                 {"r": role, "now": now, "id": user.user_id})
    return find_user(conn, username)


def set_disabled(conn: Connection, *, username: str, disabled: bool, now: datetime) -> User:
    """Disable (or re-enable) a user; disabling ends every session and revokes the user's API tokens."""
    user = find_user(conn, username)
    conn.execute(sa.text(
        "UPDATE users SET disabled = :d, session_epoch = session_epoch + 1, updated_at = :now WHERE user_id = :id"),
        {"d": disabled, "now": now, "id": user.user_id})
    if disabled:
        conn.execute(sa.text("UPDATE api_tokens SET revoked_at = :now WHERE user_id = :id AND revoked_at IS NULL"),
                     {"now": now, "id": user.user_id})
    return find_user(conn, username)


def set_password(conn: Connection, *, username: str, password: str, now: datetime) -> None:
    """Replace a password; other sessions of the user end."""
    if len(password) < MIN_PASSWORD:
        raise InvalidInput(f"password must be at least {MIN_PASSWORD} characters")
    user = find_user(conn, username)
    conn.execute(sa.text("UPDATE users SET password_hash = :h, session_epoch = session_epoch + 1, "
                         "updated_at = :now WHERE user_id = :id"),
                 {"h": hash_password(password), "now": now, "id": user.user_id})


def authenticate(conn: Connection, *, username: str, password: str, remote_addr: str | None, now: datetime,
                 max_failures: int = 5, window: timedelta = timedelta(minutes=15)) -> User | None:
    """Check a password, refusing with RateLimited after too many recent failures by name or address."""
    _throttle(conn, username=username, remote_addr=remote_addr, now=now, max_failures=max_failures, window=window)
    row = conn.execute(sa.text(f"SELECT {_COLUMNS}, password_hash FROM users WHERE lower(username) = lower(:u)"),
                       {"u": username}).mappings().first()
    ok = False
    try:
        ok = _hasher.verify(row["password_hash"] if row else _DUMMY_HASH, password) and row is not None
    except (VerificationError, InvalidHashError):
        ok = False
    ok = ok and not row["disabled"]
    conn.execute(sa.text("INSERT INTO login_attempts (at, username, remote_addr, ok) VALUES (:at, :u, :a, :ok)"),
                 {"at": now, "u": username.lower()[:100], "a": remote_addr, "ok": ok})
    if not ok:
        return None
    if _hasher.check_needs_rehash(row["password_hash"]):
        conn.execute(sa.text("UPDATE users SET password_hash = :h WHERE user_id = :id"),
                     {"h": hash_password(password), "id": row["user_id"]})
    conn.execute(sa.text("UPDATE users SET last_login_at = :now WHERE user_id = :id"),
                 {"now": now, "id": row["user_id"]})
    return User(**{k: v for k, v in row.items() if k != "password_hash"})


def _throttle(conn: Connection, *, username: str, remote_addr: str | None, now: datetime, max_failures: int,
              window: timedelta) -> None:
    since = now - window
    # Failures count until a success by the same name; per address they count regardless of name.
    by_name = conn.execute(sa.text(
        "SELECT count(*), min(at) FROM login_attempts WHERE username = :u AND at > :since AND NOT ok "
        "AND at > COALESCE((SELECT max(at) FROM login_attempts WHERE username = :u AND ok), '-infinity')"),
        {"u": username.lower()[:100], "since": since}).one()
    by_addr = conn.execute(sa.text(
        "SELECT count(*), min(at) FROM login_attempts WHERE remote_addr = :a AND at > :since AND NOT ok"),
        {"a": remote_addr, "since": since}).one() if remote_addr else (0, None)
    for count, first, limit in ((by_name[0], by_name[1], max_failures), (by_addr[0], by_addr[1], max_failures * 4)):
        if count >= limit:
            retry = max(1, int((first + window - now).total_seconds()) + 1)
            raise RateLimited("too many failed logins; try again later", retry_after=retry)


def prune_login_attempts(conn: Connection, *, now: datetime, keep: timedelta = timedelta(days=1)) -> int:
    """Delete login attempts older than keep (they only serve throttling)."""
    return conn.execute(sa.text("DELETE FROM login_attempts WHERE at < :t"), {"t": now - keep}).rowcount


def _check(*, username: str, password: str, role: str) -> list[str]:
    problems = []
    if not USERNAME.match(username or ""):
        problems.append("username must be 1-64 letters, digits, '.', '_', '@' or '-'")
    if len(password or "") < MIN_PASSWORD:
        problems.append(f"password must be at least {MIN_PASSWORD} characters")
    if role not in ROLES:
        problems.append(f"role must be one of {', '.join(ROLES)}")
    return problems
