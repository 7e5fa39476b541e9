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
