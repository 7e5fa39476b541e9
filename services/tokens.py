"""API tokens: per-source ingestion tokens and per-user bearer tokens, shown once and stored hashed."""
from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy import Connection

from services import authstate
from services.errors import InvalidInput, NotFound

# Tokens carry 256 random bits, so a plain SHA-256 is enough to store them: a memory-hard hash
# protects guessable secrets (passwords) and would cost ~50 ms on every ingestion request.
TOKEN_BYTES = 32
LAST_USED_RESOLUTION = timedelta(seconds=60)


@dataclass(frozen=True)
class Token:
    """A token's public record (never the secret or its hash)."""

    token_id: UUID
    kind: str
    source_system: str | None
    user_id: UUID | None
    name: str | None
    prefix: str
    signed: bool
    created_at: datetime
    created_by: str | None
    revoked_at: datetime | None
    last_used_at: datetime | None

    def public(self) -> dict[str, Any]:
        """What listings show."""
        return {"token_id": str(self.token_id), "kind": self.kind, "source_system": self.source_system,
                "user_id": str(self.user_id) if self.user_id else None, "name": self.name,
                "prefix": self.prefix, "signed": self.signed, "created_at": self.created_at,
                "created_by": self.created_by, "revoked_at": self.revoked_at, "last_used_at": self.last_used_at}


@dataclass(frozen=True)
class IssuedToken:
    """A newly created token with its secret and, for signed sources, its webhook signing secret."""

    token: Token
    secret: str
    signing_secret: str | None = None


_COLUMNS = ("token_id, kind, source_system, user_id, name, prefix, (signing_secret IS NOT NULL) AS signed, "
            "created_at, created_by, revoked_at, last_used_at")


def hash_token(secret: str) -> str:
    """The stored form of a token."""
    return hashlib.sha256(secret.encode()).hexdigest()


def create_ingest_token(conn: Connection, *, source_system: str, created_by: str, now: datetime,
                        name: str | None = None, signed: bool = False) -> IssuedToken:
    """A token that authenticates ingestion for one source; signed=True also issues a webhook secret."""
    if not source_system:
        raise InvalidInput("an ingestion token needs a source system")
    signing = "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode() if signed else None
    return _insert(conn, kind="ingest", source_system=source_system, user_id=None, name=name,
                   created_by=created_by, now=now, signing_secret=signing)


def create_user_token(conn: Connection, *, user_id: UUID, created_by: str, now: datetime,
                      name: str | None = None) -> IssuedToken:
    """A bearer token for scripts acting as user_id (with that user's role)."""
    return _insert(conn, kind="user", source_system=None, user_id=user_id, name=name, created_by=created_by,
                   now=now, signing_secret=None)


def _insert(conn: Connection, *, kind: str, source_system: str | None, user_id: UUID | None, name: str | None,
            created_by: str, now: datetime, signing_secret: str | None) -> IssuedToken:
    authstate.changed()
    body = secrets.token_urlsafe(TOKEN_BYTES)
    secret = f"fl{kind[0]}_{body}"
    row = conn.execute(sa.text(
        "INSERT INTO api_tokens (token_id, kind, source_system, user_id, name, token_hash, prefix, signing_secret, "
        f"created_at, created_by) VALUES (:id, :kind, :src, :uid, :name, :hash, :prefix, :sig, :now, :by) "
        f"RETURNING {_COLUMNS}"),
        {"id": uuid.uuid4(), "kind": kind, "src": source_system, "uid": user_id, "name": name,
         "hash": hash_token(secret), "prefix": secret[:8], "sig": signing_secret, "now": now,
         "by": created_by}).mappings().one()
    return IssuedToken(Token(**row), secret, signing_secret)


def list_tokens(conn: Connection, *, source_system: str | None = None, include_revoked: bool = True) -> list[Token]:
    """Tokens newest first, optionally for one source."""
    rows = conn.execute(sa.text(
        f"SELECT {_COLUMNS} FROM api_tokens WHERE (CAST(:src AS text) IS NULL OR source_system = :src) "
        "AND (:all OR revoked_at IS NULL) ORDER BY created_at DESC"),
        {"src": source_system, "all": include_revoked}).mappings().all()
    return [Token(**row) for row in rows]


def revoke_token(conn: Connection, *, token_id: str, now: datetime) -> Token:
    """Revoke a token by id or by its unique id prefix; revoking twice keeps the first time."""
    authstate.changed()  # drops this process's cached verifications at once
    rows = conn.execute(sa.text(f"SELECT {_COLUMNS} FROM api_tokens WHERE CAST(token_id AS text) LIKE :p"),
                        {"p": token_id.lower().replace("%", "") + "%"}).mappings().all()
    if len(rows) != 1:
        raise NotFound(f"no single token matches {token_id!r}" if rows else f"token {token_id!r} not found")
    conn.execute(sa.text("UPDATE api_tokens SET revoked_at = COALESCE(revoked_at, :now) WHERE token_id = :id"),
                 {"now": now, "id": rows[0]["token_id"]})
    return Token(**conn.execute(sa.text(f"SELECT {_COLUMNS} FROM api_tokens WHERE token_id = :id"),
                                {"id": rows[0]["token_id"]}).mappings().one())


def lookup(conn: Connection, *, secret: str, now: datetime) -> Token | None:
    """The active token with this secret (recording its use at most once a minute), or None."""
    row = conn.execute(sa.text(f"SELECT {_COLUMNS} FROM api_tokens WHERE token_hash = :h AND revoked_at IS NULL"),
                       {"h": hash_token(secret)}).mappings().first()
    if row is None:
        return None
    if row["last_used_at"] is None or now - row["last_used_at"] > LAST_USED_RESOLUTION:
        conn.execute(sa.text("UPDATE api_tokens SET last_used_at = :now WHERE token_id = :id"),
                     {"now": now, "id": row["token_id"]})
    return Token(**row)


def signing_secrets(conn: Connection, *, source_system: str) -> list[tuple[UUID, str]]:
    """(token id, webhook secret) of every active signed token of a source."""
    rows = conn.execute(sa.text(
        "SELECT token_id, signing_secret FROM api_tokens WHERE source_system = :s AND revoked_at IS NULL "
        "AND signing_secret IS NOT NULL ORDER BY created_at"), {"s": source_system}).all()
    return [(row[0], row[1]) for row in rows]


def touch(conn: Connection, *, token_id: UUID, now: datetime) -> None:
    """Record that a token (used through its signature) was used now."""
    conn.execute(sa.text("UPDATE api_tokens SET last_used_at = :now WHERE token_id = :id "
                         "AND (last_used_at IS NULL OR last_used_at < :stale)"),
                 {"now": now, "id": token_id, "stale": now - LAST_USED_RESOLUTION})


def same(a: str, b: str) -> bool:
    """Constant-time string comparison."""
    return hmac.compare_digest(a.encode(), b.encode())


class VerifiedTokens:
    """Ingestion tokens verified in the last `seconds`, per process, so a webhook needs no token query.

    Keyed by the token's hash and source, never the secret. A token created or revoked in this
    process drops every entry at once (authstate generation); revocation in another process takes
    effect within `seconds`. Failures are never cached.
    """

    def __init__(self, seconds: float, max_entries: int = 4096) -> None:
        self.seconds = seconds
        self.max_entries = max_entries
        self._entries: dict[tuple[str, str], tuple[float, int, UUID]] = {}
        self._lock = threading.Lock()

    def get(self, *, secret: str, source_system: str) -> UUID | None:
        """The token id of a recent successful verification of secret for source_system, or None."""
        entry = self._entries.get((source_system, hash_token(secret)))
        if entry is None or entry[0] < time.monotonic() or entry[1] != authstate.generation():
            return None
        return entry[2]

    def put(self, *, secret: str, source_system: str, token_id: UUID, generation: int) -> None:
        """Remember a verification that started at credentials generation `generation`."""
        with self._lock:
            if len(self._entries) >= self.max_entries:
                self._entries.clear()  # many distinct tokens: start over rather than grow without bound
            self._entries[(source_system, hash_token(secret))] = (time.monotonic() + self.seconds, generation,
                                                                 token_id)
