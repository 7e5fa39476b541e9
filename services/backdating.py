"""Writing history "as of" an earlier time (the demo's webhook events) without slipping behind what is
already summarised or sealed.

Ingestion stamps an event with the time of its transaction. The demo records runs that started hours
ago, and their events should have arrived just before them, not when `flowledger demo` ran. Two things
forbid writing an arbitrary earlier time:
- the events rollup folds events by `received_at` up to its watermark, so an event received behind
  the watermark would never be counted;
- `event_status_history` is sealed by `at`, so a row in an hour already sealed would make verify
  report it as added.
`floor` returns the earliest time that is safe in the caller's transaction, and holds it there.
"""
from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy import Connection

from services import rollups, sealing

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def floor(conn: Connection) -> datetime:
    """The earliest time a backdated event or status row may carry in conn's (writer) transaction.

    The transaction then holds the rollup watermark row, so a refresh waits for it to end, and the seal
    lock in shared mode, so the seal job skips its run meanwhile. Neither can pass the floor before the
    backdated rows are committed.
    """
    conn.execute(sa.text("SELECT pg_advisory_xact_lock_shared(:k)"), {"k": sealing.LOCK_KEY})
    # The row must exist to be held: a first refresh would otherwise fold past rows not yet committed.
    conn.execute(sa.text(
        "INSERT INTO rollup_watermarks (rollup, recorded_before) VALUES (:r, '1970-01-01 00:00+00') "
        "ON CONFLICT (rollup) DO NOTHING"), {"r": rollups.ROLLUP})
    mark = conn.execute(sa.text("SELECT recorded_before FROM rollup_watermarks WHERE rollup = :r FOR SHARE"),
                        {"r": rollups.ROLLUP}).scalar_one()
    last = sealing.last_seal(conn)
    return max(mark, last[0] if last else EPOCH, EPOCH)
