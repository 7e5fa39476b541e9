"""Real `flowledger serve` processes on one database: every job slot runs once, and a killed leader is taken over.

Three serve processes share one database and object store, with every scheduled job shortened to a
2-second interval. The leader is SIGTERMed, then the next leader is SIGKILLed; the job_runs table and
the jobs' own effects (alert_history, the notification outbox, what the PagerDuty and Slack receivers
got) must show each slot run by exactly one process and nothing lost after each handover.
"""
from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from app.scheduler import JOBS
from services import events
from services.db import Database
from services.objectstore import LocalObjectStore
from services.payloads import PayloadConfig
from tests.fixtures.serve import ServedApp, start_serve
from tests.services.jobs_factories import Receiver, ingest_event, make_workflow, record_run

pytestmark = pytest.mark.slow

INTERVAL = 2  # seconds between slots of every job during this test (production: 30 s to a week)
LEADER_POLL = 0.5  # how often a standby tries to take the leader lock (production: 10 s)
# A new leader's first slot comes at most one poll plus one slot after the old one is gone; the rest
# is slack for a loaded machine. Slots inside this window may be lost, none after it.
HANDOVER = timedelta(seconds=LEADER_POLL + INTERVAL + 3)
DEADLINE = 30.0


@pytest.fixture
def db(fresh_database: Database) -> Database:
    """The scheduled jobs act on the whole database (alert rates, the outbox): this test gets its own."""
    fresh_database.migrate()
    return fresh_database


@pytest.fixture
def receivers() -> Iterator[tuple[Receiver, Receiver]]:
    pagerduty, slack = Receiver(), Receiver()
    yield pagerduty, slack
    pagerduty.close()
    slack.close()


def _wait(what: str, condition: Callable[[], Any], servers: list[ServedApp], timeout: float = DEADLINE) -> Any:
    """Poll a database condition until it holds, or fail with the servers' logs."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = condition()
        if result:
            return result
        time.sleep(0.1)  # polling interval bounded by the deadline, not a synchronisation stand-in
    logs = "\n".join(s.log()[-3000:] for s in servers)
    pytest.fail(f"timed out after {timeout}s waiting for {what}\n{logs}")


def _runs(db: Database) -> list[sa.Row]:
    with db.reader() as conn:
        return conn.execute(sa.text(
            "SELECT job, slot, host, status, finished_at, detail FROM job_runs ORDER BY job, slot")).all()


def _pid(row: sa.Row) -> int:
    return int(row.host.rsplit(":", 1)[1])


def _ran_since(db: Database, pids: set[int], since: datetime) -> Callable[[], set[int]]:
    """A condition: every job ran a slot after `since` in one of `pids`; yields the pids that did."""
    def check() -> set[int]:
        recent = [r for r in _runs(db) if r.slot > since and _pid(r) in pids and r.status == "succeeded"]
        return {_pid(r) for r in recent} if {r.job for r in recent} == set(JOBS) else set()
    return check


def _dead_letter(db: Database, label: str, n: int = 3) -> list[str]:
    """Dead-letter n new events, as the runner does after its last retry."""
    ids = []
    with db.writer() as conn:
        for i in range(n):
            event_id = ingest_event(conn, {"order": f"{label}-{i}"}, source="shop", event_type="order.created")
            events.append_status(conn, event_id=event_id, status="dead_lettered",
                                 detail={"attempts": 5, "error": f"CRM answered 500 ({label})"})
            ids.append(str(event_id))
    return ids


def _slack_mentions(slack: Receiver) -> Counter:
    return Counter(word.split("/events/")[1].split("|")[0] for body in list(slack.bodies)
                   for word in body["text"].split() if "/events/" in word)


def _outbox(db: Database) -> dict[str, int]:
    with db.reader() as conn:
        return dict(conn.execute(sa.text("SELECT state, count(*) FROM notifications GROUP BY state")).all())


def _now() -> datetime:
    return datetime.now(UTC)


def test_serve_processes_run_every_job_slot_once_and_take_over_a_killed_leader(
        db: Database, receivers: tuple[Receiver, Receiver], tmp_path: Path) -> None:
    pagerduty, slack = receivers
    objects = tmp_path / "objects"
    env = {
        "DATABASE_URL": db.admin_url.render_as_string(hide_password=False),
        "FLOWLEDGER_OBJECT_STORE_URL": f"file://{objects}",
        "FLOWLEDGER_SCHEDULER_JOB_INTERVALS": json.dumps({name: INTERVAL for name in JOBS}),
        "FLOWLEDGER_SCHEDULER_LEADER_POLL_SECONDS": str(LEADER_POLL),
        "FLOWLEDGER_PAGERDUTY_ROUTING_KEY": "test-routing-key",
        "FLOWLEDGER_PAGERDUTY_URL": pagerduty.url,
        "FLOWLEDGER_SLACK_WEBHOOK_URL": slack.url,
        "FLOWLEDGER_ALERT_MIN_EXECUTIONS": "5",
    }
    payloads = PayloadConfig(store=LocalObjectStore(objects), train_dictionaries=False)
    servers: list[ServedApp] = []

    def serve(name: str) -> ServedApp:
        served = start_serve(tmp_path / name, env=env)
        servers.append(served)
        return served

    try:
        with ThreadPoolExecutor(2) as pool:
            first, second = pool.map(serve, ["a", "b"])
        pids = {pid: s for s in (first, second) for pid in s.worker_pids()}
        started = _now()
        leaders = _wait("the first leader to run every job", _ran_since(db, set(pids), started), servers)
        assert len(leaders) == 1, f"two processes ran slots at once: {leaders}"
        leader1 = pids[leaders.pop()]

        # Phase 1: a failure spike pages PagerDuty and dead letters reach Slack, whichever process runs.
        workflow = "scheduler-processes-crm"
        with db.writer() as conn:
            make_workflow(conn, workflow)
            for i in range(5):
                record_run(conn, payloads, workflow, status="failed", error="CRM answered 500", steps=1, seed=i,
                           size_hint=128)
        dead = {"before": _dead_letter(db, "before"), "term": [], "kill": []}
        third = serve("c")  # a third process joins while the first two are running
        pids.update({pid: third for pid in third.worker_pids()})
        _wait("phase-1 alerts delivered", lambda: (
            set(dead["before"]) <= set(_slack_mentions(slack))
            and any(b.get("event_action") == "trigger" for b in pagerduty.bodies)), servers)

        # Phase 2: the leader is stopped the orderly way (SIGTERM); another process takes over.
        term_at = _now()
        assert leader1.stop() == 0, leader1.log()[-3000:]
        gone1 = _now()
        dead["term"] = _dead_letter(db, "after-sigterm")
        standby = {pid for pid, s in pids.items() if s is not leader1}
        leaders = _wait("a new leader after SIGTERM", _ran_since(db, standby, gone1), servers)
        assert len(leaders) == 1, f"two processes ran slots at once after the handover: {leaders}"
        leader2 = pids[leaders.pop()]
        _wait("phase-2 dead letters delivered and the outbox empty", lambda: (
            set(dead["term"]) <= set(_slack_mentions(slack)) and not _outbox(db).get("pending")), servers)

        # Phase 3: the new leader crashes (SIGKILL, no shutdown code); the last process takes over.
        kill_at = _now()
        leader2.kill()
        gone2 = _now()
        dead["kill"] = _dead_letter(db, "after-sigkill")
        with db.writer() as conn:  # enough successes to bring the hour's failure rate back under 5 %
            for i in range(100):
                record_run(conn, payloads, workflow, steps=1, seed=100 + i, size_hint=128)
        last = {pid for pid, s in pids.items() if s is not leader1 and s is not leader2}
        _wait("a new leader after SIGKILL", _ran_since(db, last, gone2), servers)
        leader3 = next(s for s in (first, second, third) if s is not leader1 and s is not leader2)
        _wait("phase-3 alerts delivered", lambda: (
            set(dead["kill"]) <= set(_slack_mentions(slack))
            and any(b.get("event_action") == "resolve" for b in pagerduty.bodies)
            and not _outbox(db).get("pending")), servers)
        steady = _now()
        _wait("two more slots of every job", lambda: all(
            sum(1 for r in _runs(db) if r.job == job and r.slot > steady) >= 2 for job in JOBS), servers)
        assert leader3.stop() == 0
    finally:
        for served in servers:
            if served.process.poll() is None:
                served.stop()

    runs = _runs(db)
    worker = {pid: name for pid, s in pids.items() for name, x in
              (("leader1", leader1), ("leader2", leader2), ("leader3", leader3)) if s is x}
    step = timedelta(seconds=INTERVAL)
    lost: dict[str, list[int]] = {}
    for job in JOBS:
        rows = [r for r in runs if r.job == job]
        owners = [worker.get(_pid(r), f"unknown pid {_pid(r)}") for r in rows]
        # Leadership changed only when a leader died: each process's slots form one unbroken block.
        blocks = [o for i, o in enumerate(owners) if i == 0 or owners[i - 1] != o]
        assert blocks == ["leader1", "leader2", "leader3"], (job, blocks)
        by = {name: [r for r, o in zip(rows, owners, strict=True) if o == name] for name in blocks}
        for name, block in by.items():
            gaps = [b.slot - a.slot for a, b in zip(block, block[1:], strict=False) if b.slot - a.slot != step]
            assert not gaps, f"{job}: {name} skipped slots {gaps}"
        # Orderly stop: every slot the first leader started, it finished.
        assert all(r.status == "succeeded" and r.finished_at for r in by["leader1"]), job
        assert by["leader1"][-1].slot <= gone1 and by["leader2"][0].slot > term_at - step, job
        assert by["leader2"][0].slot - gone1 <= HANDOVER, (job, by["leader2"][0].slot, gone1)
        # Crash: only the slot in flight at the kill may be unfinished, and the next leader's first run of
        # the job marks it abandoned (its process is gone) instead of leaving it 'running' for ever.
        unfinished = [r for r in by["leader2"] if r.status != "succeeded"]
        assert unfinished in ([], [by["leader2"][-1]]) and all(r.status == "abandoned" for r in unfinished), job
        assert by["leader2"][-1].slot <= gone2 and by["leader3"][0].slot > kill_at - step, job
        assert by["leader3"][0].slot - gone2 <= HANDOVER, (job, by["leader3"][0].slot, gone2)
        assert all(r.status == "succeeded" for r in by["leader3"]), job
        lost[job] = [int((by[b][0].slot - by[a][-1].slot) / step) - 1
                     for a, b in (("leader1", "leader2"), ("leader2", "leader3"))]

    # The jobs' own effects: every dead letter posted once, one page and one resolve, nothing sent twice.
    every_dead = dead["before"] + dead["term"] + dead["kill"]
    with db.reader() as conn:
        history = conn.execute(sa.text(
            "SELECT channel, kind, dedup_key, action, detail FROM alert_history ORDER BY id")).all()
        notifications = conn.execute(sa.text("SELECT channel, state FROM notifications")).all()
    posted = Counter(e for h in history if h.kind == "dead_letter" for e in h.detail["events"])
    assert posted == Counter(every_dead)
    assert _slack_mentions(slack) == Counter(every_dead)
    pages = [(h.kind, h.dedup_key, h.action) for h in history if h.channel == "pagerduty"]
    rate_key = next(k for kind, k, a in pages if kind == "failure_rate")
    assert workflow in rate_key
    assert [p for p in pages if p[0] == "failure_rate"] == [("failure_rate", rate_key, "trigger"),
                                                            ("failure_rate", rate_key, "resolve")]
    assert [(b["dedup_key"], b["event_action"]) for b in pagerduty.bodies
            if b["dedup_key"] == rate_key] == [(rate_key, "trigger"), (rate_key, "resolve")]
    assert Counter((b["dedup_key"], b["event_action"]) for b in pagerduty.bodies) == Counter(
        (k, a) for _, k, a in pages)
    assert all(n.state == "sent" for n in notifications)
    assert len(notifications) == len(pagerduty.bodies) + len(slack.bodies)
    sent_by_jobs = sum(r.detail.get("sent", 0) for r in runs if r.job in ("alerting", "delivery"))
    assert sent_by_jobs == len(notifications)
    print(f"\n{len(runs)} job runs; slots lost per job at the SIGTERM and SIGKILL handovers: {lost}")
