"""The append-only admin audit log: who did what privileged action, when, and from where."""
from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection


def record(conn: Connection, *, actor: str, action: str, target: str | None = None,
           detail: dict[str, Any] | None = None, remote_addr: str | None = None, now: datetime | None = None) -> int:
    """Append one entry in the caller's transaction (so the action and its record commit together)."""
    return conn.execute(sa.text(
        "INSERT INTO admin_audit_log (at, actor, action, target, detail, remote_addr) "
        "VALUES (COALESCE(:at, now()), :actor, :action, :target, CAST(:detail AS jsonb), :addr) RETURNING id"),
        {"at": now, "actor": actor, "action": action, "target": target,
         "detail": json.dumps(detail or {}, default=str), "addr": remote_addr}).scalar_one()


def list_entries(conn: Connection, *, actor: str | None = None, action: str | None = None,
                 since: datetime | None = None, until: datetime | None = None, before_id: int | None = None,
                 limit: int = 100) -> list[dict[str, Any]]:
    """Entries newest first with optional filters; page with before_id = the last id seen."""
    rows = conn.execute(sa.text(
        "SELECT id, at, actor, action, target, detail, remote_addr FROM admin_audit_log "
        "WHERE (CAST(:actor AS text) IS NULL OR actor = :actor) "
        "AND (CAST(:action AS text) IS NULL OR action = :action) "
        "AND (CAST(:since AS timestamptz) IS NULL OR at >= :since) "
        "AND (CAST(:until AS timestamptz) IS NULL OR at < :until) "
        "AND (CAST(:before AS bigint) IS NULL OR id < :before) ORDER BY id DESC LIMIT :limit"),
        {"actor": actor, "action": action, "since": since, "until": until, "before": before_id,
         "limit": limit}).mappings().all()
    return [dict(row) for row in rows]
