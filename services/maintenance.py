"""Housekeeping of the ledger's structure: monthly partitions ahead of time."""
from __future__ import annotations

import sqlalchemy as sa

from services.db import Database


def ensure_partitions(database: Database, *, months_ahead: int = 3) -> int:
    """Create missing monthly partitions up to months_ahead; returns how many were created."""
    with database.writer() as conn:
        return int(conn.execute(sa.text("SELECT flowledger_ensure_partitions(0, :ahead)"),
                                {"ahead": months_ahead}).scalar_one())
