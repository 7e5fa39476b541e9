"""The weekly summary arrives over SMTP (aiosmtpd on loopback) with totals that match the ledger."""
from __future__ import annotations

import email
import socket
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email import policy
from pathlib import Path

import pytest
import sqlalchemy as sa
from aiosmtpd.controller import Controller

from services import notify, reports
from services.db import Database
from services.objectstore import LocalObjectStore
from services.payloads import PayloadConfig
from tests.services.jobs_factories import ingest_event, listed_errors, make_workflow, record_run


class Inbox:
    """An aiosmtpd handler keeping every message."""

    def __init__(self) -> None:
        self.messages: list[tuple[list[str], bytes]] = []

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 (aiosmtpd's hook name)
        self.messages.append((list(envelope.rcpt_tos), envelope.content))
        return "250 OK"


@pytest.fixture
def smtp() -> Iterator[tuple[Inbox, int]]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    yield inbox, port
    controller.stop()


@pytest.fixture
def db(fresh_database: Database) -> Database:
    fresh_database.migrate()
    return fresh_database


def test_the_weekly_email_arrives_with_totals_matching_the_ledger(
        db: Database, smtp: tuple[Inbox, int], tmp_path: Path) -> None:
    inbox, port = smtp
    cfg = PayloadConfig(store=LocalObjectStore(tmp_path / "o"), train_dictionaries=False)
    real = datetime.now(UTC)
    now = real + timedelta(days=1)
    with db.writer() as conn:
        make_workflow(conn, "orders", retention_days=30)
        make_workflow(conn, "ledger", legal_hold=True)
        for i in range(5):
            ingest_event(conn, {"n": i}, event_type="order.created")
        for i in range(8):
            record_run(conn, cfg, "orders", at=real - timedelta(hours=2, minutes=i), steps=1, seed=i)
        for i in range(2):
            event_id = ingest_event(conn, {"bad": i}, event_type="order.paid")
            record_run(conn, cfg, "orders", status="failed", event_id=event_id, at=real - timedelta(hours=1),
                       steps=1, seed=50 + i, error="CRM 500", failed_step="crm")
        for i in range(4):  # the previous week: all fine
            record_run(conn, cfg, "ledger", at=real - timedelta(days=8), steps=1, seed=80 + i)
    with db.reader() as conn:
        summary = reports.weekly_summary(conn, now=now, public_url="https://fl.example")
        start, end = reports.week_bounds(now)
        expected_events = conn.execute(sa.text(
            "SELECT count(*) FROM event_state WHERE received_at >= :s AND received_at < :e"),
            {"s": start, "e": end}).scalar()
        finished, completed = conn.execute(sa.text(
            "SELECT count(*), count(*) FILTER (WHERE status = 'completed') FROM execution_state "
            "WHERE completed_at >= :s AND completed_at < :e"), {"s": start, "e": end}).one()
    assert summary["events_processed"] == expected_events == 7
    assert (summary["finished"], summary["completed"]) == (finished, completed) == (10, 8)
    assert summary["success_rate"] == pytest.approx(0.8) and summary["change_points"] == pytest.approx(-20.0)
    assert summary["top_failures_by_event_type"] == [("order.paid", 2)]
    assert summary["top_failures_by_workflow"] == [("orders", 2)]
    assert summary["still_failing"] == 2 and summary["fixed_by_replay"] == 0
    # the e-mail's links: the week's failures as counted, and the dead letters page where replays start
    assert listed_errors(db, summary["links"]["failures"]) == ["CRM 500", "CRM 500"]
    assert summary["links"]["replay"] == "https://fl.example/dlq"
    assert {r["workflow_id"] for r in summary["retention"]} == {"ledger"}  # held; "orders" is young
    message = reports.build_email(summary, sender="flowledger@example.com", to=["ops@example.com"])
    with db.writer() as conn:
        notify.enqueue(conn, channel="email", payload={"to": ["ops@example.com"], "mime": message.as_string()})
    result = notify.deliver(db, notify.Endpoints(smtp_host="127.0.0.1", smtp_port=port))
    assert result["sent"] == 1
    [(rcpt, raw)] = inbox.messages
    received = email.message_from_bytes(raw, policy=policy.default)
    assert rcpt == ["ops@example.com"] and "80.0% success" in received["Subject"]
    text = received.get_body(("plain",)).get_content()
    html = received.get_body(("html",)).get_content()
    assert "Events processed: 7" in text and "-20.0 points" in text and "order.paid: 2" in text
    assert "https://fl.example/executions?status=failed" in html
    png = [p for p in received.walk() if p.get_content_type() == "image/png"]
    assert len(png) == 1 and png[0].get_content().startswith(b"\x89PNG")
    assert png[0]["Content-ID"].strip("<>") in html


def test_without_an_smtp_host_the_email_is_written_to_the_outbox_folder(tmp_path: Path) -> None:
    where = notify.send_email("Subject: hi\n\nbody\n", ["a@example.com"], notify.Endpoints(outbox_dir=tmp_path))
    assert Path(where).read_text().startswith("Subject: hi")
