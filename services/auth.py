"""Authentication decisions without HTTP: open mode, webhook signatures, rate-limit buckets, the session key."""
from __future__ import annotations

import base64
import hashlib
import hmac
import math
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy import Connection

from services import tokens
from services.errors import RateLimited, Unauthorized


@dataclass(frozen=True)
class IngestCredentials:
    """What an ingestion request presented, lifted from its headers by the edge."""

    bearer: str | None = None
    webhook_id: str | None = None
    webhook_timestamp: str | None = None
    webhook_signature: str | None = None
    hub_signature: str | None = None

    @property
    def signed(self) -> bool:
        return bool(self.webhook_signature or self.hub_signature)


def is_open(conn: Connection) -> bool:
    """True while no user and no token exists: the first-run mode, reachable on loopback only."""
    return not conn.execute(sa.text(
        "SELECT EXISTS (SELECT 1 FROM users) OR EXISTS (SELECT 1 FROM api_tokens)")).scalar_one()


def authenticate_ingest(conn: Connection, *, source_system: str, body: bytes, creds: IngestCredentials,
                        now: datetime, tolerance_seconds: int = 300) -> UUID:
    """The id of the token that authenticates this request for source_system, or Unauthorized."""
    if creds.signed:
        return _by_signature(conn, source_system=source_system, body=body, creds=creds, now=now,
                             tolerance_seconds=tolerance_seconds)
    if not creds.bearer:
        raise Unauthorized(f"ingestion for source {source_system!r} needs a token or a signature")
    token = tokens.lookup(conn, secret=creds.bearer, now=now)
    # One message for unknown, revoked and other-source tokens: the caller learns nothing about which.
    if token is None or token.kind != "ingest" or token.source_system != source_system:
        raise Unauthorized(f"the token is not valid for source {source_system!r}")
    if token.signed:
        raise Unauthorized(f"source {source_system!r} requires a webhook signature")
    return token.token_id


def _by_signature(conn: Connection, *, source_system: str, body: bytes, creds: IngestCredentials, now: datetime,
                  tolerance_seconds: int) -> UUID:
    keys = tokens.signing_secrets(conn, source_system=source_system)
    if creds.webhook_signature:
        signed_at = _timestamp(creds.webhook_timestamp)
        if signed_at is None or not creds.webhook_id:
            raise Unauthorized("webhook-id and webhook-timestamp are required with webhook-signature")
        if abs(now.timestamp() - signed_at) > tolerance_seconds:
            raise Unauthorized(f"webhook-timestamp is outside the {tolerance_seconds} s tolerance window")
        for token_id, key in keys:
            if standard_webhook_valid(key, creds.webhook_id, creds.webhook_timestamp or "", body,
                                      creds.webhook_signature):
                tokens.touch(conn, token_id=token_id, now=now)
                return token_id
        raise Unauthorized("webhook-signature does not match")
    for token_id, key in keys:
        if hub_signature_valid(key, body, creds.hub_signature or ""):
            tokens.touch(conn, token_id=token_id, now=now)
            return token_id
    raise Unauthorized("X-Hub-Signature-256 does not match")


def _timestamp(value: str | None) -> int | None:
    try:
        return int(value or "")
    except ValueError:
        return None


def _key_bytes(secret: str) -> bytes:
    """Standard Webhooks keys are 'whsec_' + base64; the hub scheme uses the secret text itself."""
    if secret.startswith("whsec_"):
        return base64.b64decode(secret[len("whsec_"):])
    return secret.encode()


def standard_webhook_signature(secret: str, msg_id: str, timestamp: str, body: bytes) -> str:
    """The 'v1,<base64>' signature of the Standard Webhooks specification."""
    mac = hmac.new(_key_bytes(secret), f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


def standard_webhook_valid(secret: str, msg_id: str, timestamp: str, body: bytes, header: str) -> bool:
    """True when any space-separated signature in header matches (senders list several while rotating keys)."""
    expected = standard_webhook_signature(secret, msg_id, timestamp, body)
    return any(hmac.compare_digest(expected.encode(), part.encode()) for part in header.split() if part)


def hub_signature(secret: str, body: bytes) -> str:
    """The 'sha256=<hex>' HMAC of the raw body (GitHub's X-Hub-Signature-256 scheme)."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def hub_signature_valid(secret: str, body: bytes, header: str) -> bool:
    """True when header is the sha256= HMAC of body under secret."""
    return hmac.compare_digest(hub_signature(secret, body).encode(), header.strip().encode())


def take(conn: Connection, *, bucket: str, rate: float, burst: int, now: datetime) -> None:
    """Spend one token from a PostgreSQL token bucket shared by every worker; RateLimited when empty."""
    conn.execute(sa.text("INSERT INTO rate_limit_buckets (bucket, tokens, updated_at) VALUES (:b, :burst, :now) "
                         "ON CONFLICT (bucket) DO NOTHING"), {"b": bucket, "burst": float(burst), "now": now})
    # The row lock serialises concurrent requests of one source across every worker and replica.
    level, updated = conn.execute(sa.text(
        "SELECT tokens, updated_at FROM rate_limit_buckets WHERE bucket = :b FOR UPDATE"), {"b": bucket}).one()
    level = min(float(burst), level + max(0.0, (now - updated).total_seconds()) * rate)
    if level < 1:
        raise RateLimited(f"rate limit of {rate:g} requests/s exceeded for {bucket}",
                          retry_after=max(1, math.ceil((1 - level) / rate)))
    conn.execute(sa.text("UPDATE rate_limit_buckets SET tokens = :t, updated_at = :now WHERE bucket = :b"),
                 {"t": level - 1, "now": max(now, updated), "b": bucket})


def session_key(conn: Connection, configured: str | None) -> str:
    """The key that signs session cookies: the configured one, else one generated once and kept in the database."""
    if configured:
        return configured
    conn.execute(sa.text("INSERT INTO app_secrets (name, value) VALUES ('session_key', :v) "
                         "ON CONFLICT (name) DO NOTHING"), {"v": secrets.token_urlsafe(48)})
    return conn.execute(sa.text("SELECT value FROM app_secrets WHERE name = 'session_key'")).scalar_one()


def credentials_from(headers: Mapping[str, str]) -> IngestCredentials:
    """Lift ingestion credentials from request headers (Authorization: Bearer or X-Flowledger-Token)."""
    auth = headers.get("Authorization", "")
    bearer = auth[7:].strip() if auth[:7].lower() == "bearer " else headers.get("X-Flowledger-Token")
    return IngestCredentials(bearer=bearer or None, webhook_id=headers.get("webhook-id"),
                             webhook_timestamp=headers.get("webhook-timestamp"),
                             webhook_signature=headers.get("webhook-signature"),
                             hub_signature=headers.get("X-Hub-Signature-256"))
