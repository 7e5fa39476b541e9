"""The delivery outbox: PagerDuty, Slack and email messages queued in PostgreSQL, sent with retries and backoff."""
from __future__ import annotations

import json
import logging
import smtplib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email import message_from_string, policy
from pathlib import Path
from typing import Any

import requests
import sqlalchemy as sa
from sqlalchemy import Connection

from services.db import Database

log = logging.getLogger(__name__)

CHANNELS = ("pagerduty", "slack", "email")
MAX_BACKOFF = timedelta(hours=1)


@dataclass(frozen=True)
class Endpoints:
    """Where each channel delivers; an empty value means the channel is off (email: the outbox folder)."""

    pagerduty_url: str = ""
    slack_webhook_url: str = ""
    smtp_host: str = ""
    smtp_port: int = 25
    smtp_user: str = ""
    smtp_password: str = ""
    outbox_dir: Path | None = None
    timeout: float = 5.0


def enqueue(conn: Connection, *, channel: str, payload: dict[str, Any], now: datetime | None = None) -> int:
    """Queue one message in the caller's transaction (so it is sent only if that transaction commits)."""
    if channel not in CHANNELS:
        raise ValueError(f"unknown channel {channel}")
    return conn.execute(sa.text(
        "INSERT INTO notifications (channel, payload, created_at, next_attempt_at) VALUES (:c, CAST(:p AS jsonb), "
        "COALESCE(:now, now()), COALESCE(:now, now())) RETURNING id"),
        {"c": channel, "p": json.dumps(payload, default=str), "now": now}).scalar_one()


def backoff(attempts: int) -> timedelta:
    """Delay before the next try: 30 s doubling per attempt, at most an hour; nothing is ever given up."""
    return min(timedelta(seconds=30 * 2 ** max(0, attempts - 1)), MAX_BACKOFF)


def deliver(database: Database, endpoints: Endpoints, *, now: datetime | None = None, limit: int = 200) -> dict:
    """Send due messages; a failing endpoint is skipped for the rest of this round so others still go out."""
    now = now or datetime.now(UTC)
    sent = failed = 0
    down: set[str] = set()
    with database.writer() as conn:
        due = conn.execute(sa.text(
            "SELECT id, channel, payload, attempts FROM notifications WHERE state = 'pending' "
            "AND next_attempt_at <= :now ORDER BY id LIMIT :n"), {"now": now, "n": limit}).all()
    for item in due:
        if item.channel in down:
            continue
        # Claim one row at a time (SKIP LOCKED) so two deliverers never send the same message.
        with database.writer() as conn:
            claimed = conn.execute(sa.text(
                "SELECT id FROM notifications WHERE id = :id AND state = 'pending' FOR UPDATE SKIP LOCKED"),
                {"id": item.id}).scalar()
            if claimed is None:
                continue
            try:
                _send(item.channel, item.payload, endpoints)
            except Exception as exc:  # any transport error: retry later with backoff, never drop
                down.add(item.channel)
                failed += 1
                conn.execute(sa.text(
                    "UPDATE notifications SET attempts = attempts + 1, last_error = :e, next_attempt_at = :next "
                    "WHERE id = :id"),
                    {"e": f"{type(exc).__name__}: {exc}"[:1000], "next": now + backoff(item.attempts + 1),
                     "id": item.id})
                log.warning("notification %s via %s failed: %s", item.id, item.channel, exc)
                continue
            conn.execute(sa.text("UPDATE notifications SET state = 'sent', sent_at = :now, "
                                 "attempts = attempts + 1 WHERE id = :id"), {"now": now, "id": item.id})
            sent += 1
    return {"sent": sent, "failed": failed, "channels_down": sorted(down)}


def _send(channel: str, payload: dict[str, Any], endpoints: Endpoints) -> None:
    if channel == "pagerduty":
        _post(endpoints.pagerduty_url, payload, endpoints.timeout, "PagerDuty")
    elif channel == "slack":
        _post(endpoints.slack_webhook_url, payload, endpoints.timeout, "Slack")
    else:
        send_email(payload["mime"], payload["to"], endpoints)


def _post(url: str, payload: dict[str, Any], timeout: float, what: str) -> None:
    if not url:
        raise RuntimeError(f"{what} endpoint is not configured")
    response = requests.post(url, json=payload, timeout=timeout)
    if response.status_code >= 300:
        raise RuntimeError(f"{what} answered {response.status_code}: {response.text[:200]}")


def send_email(mime: str, to: list[str], endpoints: Endpoints) -> str:
    """Send a MIME message over SMTP, or write it to the outbox folder when no SMTP host is set."""
    message = message_from_string(mime, policy=policy.SMTP)
    if not endpoints.smtp_host:
        if endpoints.outbox_dir is None:
            raise RuntimeError("no SMTP host and no outbox folder configured")
        endpoints.outbox_dir.mkdir(parents=True, exist_ok=True)
        path = endpoints.outbox_dir / f"{datetime.now(UTC):%Y%m%dT%H%M%S%f}.eml"
        path.write_text(mime)
        return str(path)
    with smtplib.SMTP(endpoints.smtp_host, endpoints.smtp_port, timeout=endpoints.timeout) as smtp:
        if endpoints.smtp_user:
            smtp.starttls()
            smtp.login(endpoints.smtp_user, endpoints.smtp_password)
        smtp.send_message(message, to_addrs=to)
    return f"smtp://{endpoints.smtp_host}:{endpoints.smtp_port}"
