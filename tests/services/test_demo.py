"""`flowledger demo` history: workflows, a failure spike above 5%, findable business ids, dead letters."""
from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from services import browse, demo, demo_plan, metrics

NOW = datetime(2020, 3, 1, 12, 0, tzinfo=UTC)


def test_the_plan_is_deterministic_and_has_retries_skips_and_a_spike():
    runs, spike = demo_plan.plan(random.Random(3), executions=400, days=10, now=NOW)
    again, _ = demo_plan.plan(random.Random(3), executions=400, days=10, now=NOW)
    assert [r.started_at for r in runs] == [r.started_at for r in again]
    assert len(runs) == 400 and all(NOW - timedelta(days=10) <= r.started_at < NOW for r in runs)
    attempts = [s for r in runs for s in r.steps]
    assert any(s.attempt > 1 and s.status == "completed" for s in attempts)
    assert any(s.status == "skipped" for s in attempts)
    in_spike = [r for r in runs if spike <= r.started_at < spike + timedelta(hours=1)]
    assert sum(r.status != "completed" for r in in_spike) / len(in_spike) > 0.05


@pytest.fixture(scope="module")
def filled(database, runtime):
    result = demo.fill(database.writer, runtime.payloads, executions=150, days=3, seed=11, now=NOW)
    return result, metrics.Period(NOW - timedelta(days=3), NOW)


def test_demo_history_crosses_the_five_percent_line_in_its_spike_hour(database, filled):
    result, window = filled
    with database.reader() as conn:
        hourly = metrics.failure_rate_hourly(conn, window=window)
        kpis = metrics.kpis(conn, window=window)
    assert kpis["executions"] == result.executions
    crossed = set(metrics.crossings(hourly)["hour"])
    assert pd_timestamp(result.spike_hour) in crossed
    assert result.failed > 0 and result.dead_lettered > 0 and result.events > 0


def test_demo_payloads_carry_customer_ids_order_numbers_and_invoice_references(database, filled):
    result, window = filled
    with database.reader() as conn:
        page = browse.executions_page(conn, since=window.since, until=window.until, workflow_id="order-sync",
                                      limit=1)
        found = browse.executions_page(conn, since=window.since, until=window.until,
                                       payload={"customer.id": _customer(conn, page["rows"][0]["execution_id"])})
    assert page["rows"][0]["execution_id"] in [r["execution_id"] for r in found["rows"]]


def _customer(conn, execution_id):
    from services import inspection

    payload = conn.execute(inspection.EXECUTION_SQL, {"e": execution_id}).mappings().one()["trigger_payload"]
    assert payload["order"]["number"].startswith("ORD-") and payload["invoice"]["reference"].startswith("INV-")
    return payload["customer"]["id"]


def pd_timestamp(moment):
    import pandas as pd

    return pd.Timestamp(moment)


def test_on_a_fresh_ledger_demo_events_arrive_just_before_their_runs_and_stay_counted_and_sealed(
        fresh_database, runtime):
    import sqlalchemy as sa

    from services import rollups, seal_verify, sealing

    fresh_database.migrate()
    now = datetime.now(UTC)
    result = demo.fill(fresh_database.writer, runtime.payloads, executions=60, days=1, seed=5, now=now)
    history = sa.text(
        "SELECT e.event_id, e.received_at, e.created_at, x.started_at, x.completed_at, "
        "array_agg(h.status ORDER BY h.id) AS statuses, array_agg(h.at ORDER BY h.id) AS ats "
        "FROM events e JOIN execution_state x ON x.event_id = e.event_id "
        "JOIN event_status_history h ON h.event_id = e.event_id GROUP BY 1, 2, 3, 4, 5")
    with fresh_database.reader() as conn:
        rows = conn.execute(history).all()
    assert len(rows) == result.events > 0
    for row in rows:
        # received just before the run started, hours before the ledger recorded it (created_at)
        assert row.received_at == row.started_at - demo.SENDER_LEAD < row.created_at - timedelta(minutes=1)
        assert row.statuses[0] == "routed" and row.ats[0] == row.received_at
        assert row.statuses[-1] in ("processed", "dead_lettered") and row.ats[-1] == min(row.completed_at, now)

    window = {"s": now - timedelta(days=2), "u": now + timedelta(hours=1)}
    counted = sa.text("SELECT flowledger_events_received(:s, :u)")
    raw = sa.text("SELECT count(*) FROM event_state WHERE received_at >= :s AND received_at < :u")
    with fresh_database.writer() as conn:
        rollups.refresh(conn, lag_seconds=0)
    with fresh_database.writer() as conn:
        sealed = sealing.seal_closed_periods(conn, None, now=now)
    with fresh_database.reader() as conn:
        assert conn.execute(counted, window).scalar_one() == conn.execute(raw, window).scalar_one() == len(rows)
    with fresh_database.reader() as conn:
        report = seal_verify.verify(conn)
    assert sealed and report.ok, (report.mismatches, report.problems)

    # Once rolled up, older times are behind the watermark: a second demo's events are received now.
    with fresh_database.reader() as conn:
        mark = conn.execute(sa.text("SELECT recorded_before FROM rollup_watermarks")).scalar_one()
        before = set(conn.execute(sa.text("SELECT event_id FROM events")).scalars())
    again = demo.fill(fresh_database.writer, runtime.payloads, executions=40, days=1, seed=6, now=now)
    with fresh_database.writer() as conn:
        rollups.refresh(conn, lag_seconds=0)
    with fresh_database.reader() as conn:
        later = [r for r in conn.execute(history).all() if r.event_id not in before]
        assert conn.execute(counted, window).scalar_one() == conn.execute(raw, window).scalar_one()
    assert len(later) == again.events > 0 and all(r.received_at >= mark for r in later)
