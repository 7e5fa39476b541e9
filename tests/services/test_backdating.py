"""History written "as of" an earlier time never lands behind the rollup watermark or in a sealed hour."""
from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from services import backdating, events, rollups, sealing


def _wait_until_blocked(database, application: str) -> None:
    """Poll until a session of that application name waits on a lock (a deadline, not a sleep)."""
    deadline = time.monotonic() + 30
    with database.autocommit("admin") as conn:
        while not conn.execute(sa.text(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = :a AND wait_event_type = 'Lock'"),
                {"a": application}).scalar_one():
            assert time.monotonic() < deadline, "the refresh never waited"
            time.sleep(0.02)


def test_a_refresh_waits_for_the_backdating_transaction_and_then_counts_its_event(fresh_database):
    fresh_database.migrate()
    with fresh_database.writer() as conn:
        rollups.refresh(conn, lag_seconds=0)
    window = {"s": datetime.now(UTC) - timedelta(days=1), "u": datetime.now(UTC) + timedelta(hours=1)}
    done: list[dict] = []
    with fresh_database.writer() as conn:
        earliest = backdating.floor(conn)
        assert earliest > datetime.now(UTC) - timedelta(minutes=5)  # the watermark of the refresh above

        def refresh() -> None:
            engine = sa.create_engine(fresh_database.engine("writer").url,
                                      connect_args={"application_name": "fl-test-refresh"})
            with engine.begin() as other:
                done.append(rollups.refresh(other, lag_seconds=0))
            engine.dispose()

        worker = threading.Thread(target=refresh)
        worker.start()
        _wait_until_blocked(fresh_database, "fl-test-refresh")
        with fresh_database.writer() as sealer:  # the seal job skips its run while history is being written
            assert sealing.seal_closed_periods(sealer, None, now=datetime.now(UTC) + timedelta(hours=3)) == []
        events.ingest(conn, events.IncomingEvent(source_system="import", body=b'{"a": 1}',
                                                 received_at=earliest + timedelta(milliseconds=1)), max_depth=64)
    worker.join(30)
    assert done and not worker.is_alive()
    with fresh_database.reader() as conn:
        counted = conn.execute(sa.text("SELECT flowledger_events_received(:s, :u)"), window).scalar_one()
        stored = conn.execute(sa.text("SELECT count(*) FROM event_state WHERE source_system = 'import'")).scalar_one()
    assert counted == stored == 1
