"""Alerting: a failure spike pages PagerDuty once and resolves once; DLQ events reach Slack; retries back off."""
from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from services import alerting, events, notify
from services.alerting import AlertConfig
from services.db import Database
from services.payloads import PayloadConfig
from tests.services.jobs_factories import Receiver, ingest_event, listed_errors, make_workflow, record_run


@pytest.fixture
def db(fresh_database: Database) -> Database:
    """Failure rates are global aggregates: each test gets its own database."""
    fresh_database.migrate()
    return fresh_database


@pytest.fixture
def cfg(tmp_path: Path) -> PayloadConfig:
    from services.objectstore import LocalObjectStore

    return PayloadConfig(store=LocalObjectStore(tmp_path / "objects"), train_dictionaries=False)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


CONFIG = AlertConfig(threshold=0.05, min_executions=20, routing_key="R0UTINGKEY", public_url="https://fl.example")


def _run(db: Database, endpoints: notify.Endpoints, now: datetime) -> list[dict]:
    with db.writer() as conn:
        actions = alerting.check_failure_rate(conn, CONFIG, now=now) + alerting.check_incidents(conn, CONFIG, now=now)
    notify.deliver(db, endpoints, now=now)
    return actions


def test_a_failure_spike_over_5_percent_pages_once_and_resolves_once(
        db: Database, cfg: PayloadConfig, receiver: Receiver) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    with db.writer() as conn:
        make_workflow(conn, "billing")
        for i in range(37):
            record_run(conn, cfg, "billing", at=now - timedelta(minutes=50) + timedelta(seconds=i), steps=1, seed=i)
        for i in range(3):  # 3/40 = 7.5% in one hour
            record_run(conn, cfg, "billing", status="failed", at=now - timedelta(minutes=20) + timedelta(seconds=i),
                       steps=1, seed=100 + i, failed_step="charge", error=f"HTTP 502 from pay-{i}.example: order {i}")
    endpoints = notify.Endpoints(pagerduty_url=receiver.url)
    for minute in range(0, 5):  # the job runs every minute; the open alert is not re-sent
        _run(db, endpoints, now + timedelta(minutes=minute))
    rate_alerts = [b for b in receiver.bodies if b["dedup_key"].startswith("flowledger/failure-rate/")]
    assert [b["event_action"] for b in rate_alerts] == ["trigger"]
    trigger = rate_alerts[0]
    assert trigger["routing_key"] == "R0UTINGKEY" and trigger["payload"]["severity"] == "critical"
    assert trigger["dedup_key"].startswith("flowledger/failure-rate/billing/")
    assert trigger["payload"]["custom_details"]["failed"] == 3 and trigger["payload"]["custom_details"]["total"] == 40
    # The three failures share one signature: one incident alert, not three.
    incidents = [b for b in receiver.bodies if b["dedup_key"].startswith("flowledger/incident/")]
    assert len(incidents) == 1 and incidents[0]["payload"]["custom_details"]["count"] == 3
    # Both pages link to the executions list holding exactly the failures they counted.
    for alert in (trigger, incidents[0]):
        link = alert["links"][0]["href"]
        assert link.startswith("https://fl.example/executions?")
        assert sorted(listed_errors(db, link)) == [f"HTTP 502 from pay-{i}.example: order {i}" for i in range(3)]
    # An hour later the window holds no failures: one resolve with the same dedup key.
    for minute in range(60, 64):
        _run(db, endpoints, now + timedelta(minutes=minute))
    rate_alerts = [b for b in receiver.bodies if b["dedup_key"].startswith("flowledger/failure-rate/")]
    assert [b["event_action"] for b in rate_alerts] == ["trigger", "resolve"]
    assert rate_alerts[1]["dedup_key"] == trigger["dedup_key"]
    with db.reader() as conn:
        history = conn.execute(sa.text(
            "SELECT action FROM alert_history WHERE kind = 'failure_rate' ORDER BY id")).scalars().all()
    assert history == ["trigger", "resolve"]


def test_a_dead_lettered_event_posts_a_slack_message_and_bursts_are_grouped_not_dropped(
        db: Database, cfg: PayloadConfig, receiver: Receiver) -> None:
    now = datetime.now(UTC)
    with db.writer() as conn:
        make_workflow(conn, "crm-sync")
        ids = []
        for i in range(25):
            event_id = ingest_event(conn, {"deal": i}, event_type="deal.won")
            record_run(conn, cfg, "crm-sync", status="failed", event_id=event_id, error="CRM 500", seed=i, steps=1)
            events.append_status(conn, event_id=event_id, status="dead_lettered", detail={"attempts": 5})
            ids.append(event_id)
    endpoints = notify.Endpoints(slack_webhook_url=receiver.url)
    receiver.fail_next = 1  # Slack is down at first: the message waits and is retried with backoff
    with db.writer() as conn:
        assert alerting.post_dead_letters(conn, CONFIG, now=now) == 25
    assert notify.deliver(db, endpoints, now=now)["failed"] == 1
    # The failed message waits for its backoff; the one not yet tried goes out on the next round.
    assert notify.deliver(db, endpoints, now=now)["sent"] == 1
    notify.deliver(db, endpoints, now=now + timedelta(minutes=5))
    text = "\n".join(b["text"] for b in receiver.bodies)
    assert len(receiver.bodies) == 2  # 25 events in messages of 20: grouped, none dropped
    assert all(str(e) in text or "deal.won" in text for e in ids)
    assert text.count("crm-sync") == 25 and "5 attempt(s)" in text and "CRM 500" in text
    assert "https://fl.example/executions/" in text
    with db.writer() as conn:  # nothing new: nothing posted again
        assert alerting.post_dead_letters(conn, CONFIG, now=now) == 0


def test_a_scheduled_workflow_that_did_not_run_raises_a_missed_run_alert(db: Database) -> None:
    now = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
    with db.writer() as conn:
        make_workflow(conn, "nightly", definition={"trigger": {"type": "schedule", "cron": "0 3 * * *"}, "steps": []})
        actions = alerting.check_missed_runs(conn, CONFIG, now=now, grace=timedelta(minutes=15))
        again = alerting.check_missed_runs(conn, CONFIG, now=now, grace=timedelta(minutes=15))
    assert [a["dedup_key"] for a in actions] == ["flowledger/missed-run/nightly/2026-03-02T03:00"]
    assert again == []


def test_signatures_ignore_ids_and_numbers_but_keep_the_step() -> None:
    a = alerting.signature("w", "charge", "HTTP 502 for order 123 (id 9f1c2d3e-0000-4000-8000-000000000001)")
    b = alerting.signature("w", "charge", "HTTP 502 for order 999 (id 1b2c3d4e-0000-4000-8000-000000000002)")
    assert a == b and alerting.signature("w", "refund", "HTTP 502") != alerting.signature("w", "charge", "HTTP 502")


