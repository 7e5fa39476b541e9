"""Replay: seed 001's partial failure, dead letters, lineage, and the bulk queue with a dying worker."""
from __future__ import annotations

import threading
from collections import Counter

import pytest
import sqlalchemy as sa

from services import dlq, lineage, replay, replay_queue
from services.runner import Runner
from tests.services.runner_helpers import (
    event_status,
    ingest_and_route,
    save,
    steps_of,
    unique,
    wait_for,
    wait_status,
)


@pytest.fixture
def runner(database, runtime):
    runner = Runner(database, runtime.payloads, threads=4)
    yield runner
    runner.shutdown(wait=False)


def deal_workflow(workflow_id: str, source: str, base: str) -> dict:
    return {
        "id": workflow_id, "name": "Deal won: CRM record and welcome email",
        "trigger": {"type": "event", "source": source, "event_type": "deal.*"},
        "steps": [
            {"name": "create_crm_record", "type": "action", "url": f"{base}/crm",
             "body": {"deal": "{{ trigger.deal_id }}", "customer": "{{ trigger.customer.email }}"}},
            {"name": "send_email", "type": "action", "url": f"{base}/email", "max_attempts": 3,
             "backoff_seconds": 0.01,
             "body": {"to": "{{ trigger.customer.email }}", "crm_request": "{{ steps.create_crm_record.body.n }}"}},
        ],
    }


def test_replay_after_email_recovers_reruns_only_the_email_step(database, runtime, runner, downstream):
    workflow_id, source = unique("seed001"), unique("crm")
    save(database, deal_workflow(workflow_id, source, downstream.url))
    downstream.statuses["/email"] = 503
    event_id, (first,) = ingest_and_route(database, runtime, runner, source=source, event_type="deal.won",
                                          payload={"deal_id": "D-1", "customer": {"email": "ana@example.com"}})

    assert wait_status(database, first) == "failed"
    original = steps_of(database, first)
    assert [(s["step_name"], s["attempt"], s["status"]) for s in original] == [
        ("create_crm_record", 1, "completed"), ("send_email", 1, "failed"), ("send_email", 2, "failed"),
        ("send_email", 3, "failed")]
    assert original[0]["external_request_id"] == "req-1" and original[3]["response_status"] == 503
    assert event_status(database, event_id) == "dead_lettered"
    with database.reader() as conn:
        dead = dlq.list_dead_lettered(conn, source_system=source)["items"]
    assert [d["event_id"] for d in dead] == [event_id]
    assert dead[0]["last_failure"]["failed_step"] == "send_email"

    downstream.statuses["/email"] = 200
    with database.writer() as conn:
        result = replay.replay_event(conn, runtime.payloads, event_id=event_id, requested_by="ops@example.com",
                                     reason="email provider recovered")
    (second,) = result["executions"]
    runner.submit(second)
    assert wait_status(database, second) == "completed"

    replayed = steps_of(database, second)
    assert [(s["step_name"], s["status"]) for s in replayed] == [("create_crm_record", "skipped"),
                                                                 ("send_email", "completed")]
    assert replayed[0]["reused_from_execution"] == first
    assert downstream.hits["/crm"] == 1
    assert downstream.hits["/email"] == 4
    # The reused CRM output fed the email step, exactly as in the original run.
    assert downstream.bodies["/email"][-1]["crm_request"] == 1
    assert event_status(database, event_id) == "processed"
    with database.reader() as conn:
        tree = lineage.lineage(conn, event_id)
        progress = replay.get_replay(conn, result["replay_id"])
        execution = conn.execute(sa.text("SELECT replay_of, trigger_source FROM executions WHERE execution_id = :e"),
                                 {"e": second}).one()
    assert execution.replay_of == first and execution.trigger_source == "webhook"
    assert [n["execution_id"] for n in tree["executions"]] == [first]
    assert [n["execution_id"] for n in tree["executions"][0]["replays"]] == [second]
    assert progress["requested_by"] == "ops@example.com" and progress["reason"] == "email provider recovered"


def test_a_new_workflow_version_still_skips_steps_that_succeeded(database, runtime, runner, downstream):
    workflow_id, source = unique("seed001v"), unique("crm")
    definition = deal_workflow(workflow_id, source, downstream.url)
    save(database, definition)
    downstream.statuses["/email"] = 500
    event_id, (first,) = ingest_and_route(database, runtime, runner, source=source, event_type="deal.won",
                                          payload={"deal_id": "D-2", "customer": {"email": "bo@example.com"}})
    assert wait_status(database, first) == "failed"
    definition["steps"][1]["url"] = f"{downstream.url}/email-v2"
    assert save(database, definition) == 2

    with database.writer() as conn:
        (second,) = replay.replay_event(conn, runtime.payloads, event_id=event_id, requested_by="dev",
                                        reason="bug fix shipped in v2")["executions"]
    runner.submit(second)
    assert wait_status(database, second) == "completed"
    assert downstream.hits["/crm"] == 1 and downstream.hits["/email-v2"] == 1


def test_bulk_selection_leaves_out_events_fixed_by_an_earlier_replay_unless_forced(database, runtime, runner,
                                                                                  downstream):
    workflow_id, source = unique("fixed"), unique("crm")
    save(database, deal_workflow(workflow_id, source, downstream.url))
    downstream.statuses["/email"] = 503
    event_id, (first,) = ingest_and_route(database, runtime, runner, source=source, event_type="deal.won",
                                          payload={"deal_id": "D-3", "customer": {"email": "cy@example.com"}})
    wait_status(database, first)
    downstream.statuses["/email"] = 200
    with database.writer() as conn:
        (second,) = replay.replay_event(conn, runtime.payloads, event_id=event_id, requested_by="dev",
                                        reason="retry")["executions"]
    runner.submit(second)
    wait_status(database, second)
    selection = replay.Selection(source_system=source)
    with database.reader() as conn:
        assert replay.plan(conn, selection)["count"] == 0
        assert replay.plan(conn, selection, force=True)["count"] == 1


def test_bulk_replay_needs_a_reason(database):
    with database.writer() as conn, pytest.raises(Exception) as err:
        replay.enqueue(conn, replay.Selection(), requested_by="ops", reason=" ")
    assert "reason" in str(err.value.problems)


CALLS: Counter[str] = Counter()
BROKEN = threading.Event()


def save_notifier(database, workflow_id: str, source: str, callable_name: str) -> None:
    """A workflow for order.paid events from source: prepare the customer, then call the action."""
    save(database, {"id": workflow_id, "name": "Order notification",
                    "trigger": {"type": "event", "source": source, "event_type": "order.paid"},
                    "steps": [{"name": "prepare", "type": "transform", "fields": {"customer": "trigger.customer"}},
                              {"name": "notify", "type": "action", "callable": callable_name}]})


def notify(context, **params):
    """A side-effecting callable: fails while BROKEN is set, counts successful calls per event."""
    if BROKEN.is_set():
        raise RuntimeError("downstream rejected the request")
    CALLS[context["event"]["id"]] += 1
    return {"notified": context["customer"]}


@pytest.mark.slow
def test_bulk_replay_of_1000_failed_events_with_4_workers_processes_each_exactly_once(database, runtime):
    runner = Runner(database, runtime.payloads, threads=4, actions={"tests.notify": notify})
    workflow_id, source = unique("bulk"), unique("shop")
    save_notifier(database, workflow_id, source, "tests.notify")
    BROKEN.set()
    event_ids = []
    try:
        for n in range(1000):
            event_id, _ = ingest_and_route(database, runtime, runner, source=source, event_type="order.paid",
                                           payload={"order": n, "customer": f"C-{n}"})
            event_ids.append(event_id)
        assert runner.wait_idle(timeout=240)
        selection = replay.Selection(workflow_id=workflow_id, status="failed")
        with database.reader() as conn:
            planned = replay.plan(conn, selection)
        assert planned["count"] == 1000 and len(planned["sample"]) == 10
        (wf,) = planned["workflows"]
        assert wf["steps"] == [
            {"name": "prepare", "type": "transform", "side_effect": False, "rerun": 0, "skipped": 1000},
            {"name": "notify", "type": "action", "side_effect": True, "rerun": 1000, "skipped": 0}]

        BROKEN.clear()
        with database.writer() as conn:
            queued = replay.enqueue(conn, selection, requested_by="ops", reason="notifier fixed")
        replay_id = queued["replay_id"]
        assert queued["total"] == planned["count"]
        # A worker that claims an item and dies: its lease must expire and the item be done by another worker.
        with database.writer() as conn:
            lost = replay_queue.claim(conn, worker="doomed", lease_seconds=1, replay_id=replay_id)
        finished = replay_queue.run_workers(database, runner, workers=4, replay_id=replay_id, lease_seconds=1,
                                            poll_seconds=0.1)
    finally:
        BROKEN.clear()
        runner.shutdown(wait=False)

    assert finished == 1000
    with database.reader() as conn:
        progress = replay.get_replay(conn, replay_id)
        per_event = dict(conn.execute(sa.text(
            "SELECT event_id, count(*) FROM executions WHERE replay_id = :r GROUP BY event_id"),
            {"r": replay_id}).all())
        reclaimed = conn.execute(sa.text("SELECT attempts, state FROM replay_items WHERE id = :i"),
                                 {"i": lost.id}).one()
    assert progress["progress"] == {"queued": 0, "running": 0, "done": 1000, "failed": 0}
    assert progress["executions"] == {"completed": 1000}
    assert sorted(per_event) == sorted(event_ids) and set(per_event.values()) == {1}
    assert all(CALLS[str(e)] == 1 for e in event_ids)
    assert tuple(reclaimed) == (2, "done")
    assert {event_status(database, e) for e in event_ids} == {"processed"}


def test_a_worker_whose_lease_ran_out_mid_item_does_not_count_it_the_one_that_took_it_over_does(
        database, runtime):
    runner = Runner(database, runtime.payloads, threads=2, actions={"tests.notify": notify})
    workflow_id, source = unique("lease"), unique("shop")
    save_notifier(database, workflow_id, source, "tests.notify")
    try:
        BROKEN.set()
        event_id, _ = ingest_and_route(database, runtime, runner, source=source, event_type="order.paid",
                                       payload={"order": 1, "customer": "C-1"})
        assert runner.wait_idle(timeout=60)
        BROKEN.clear()
        selection = replay.Selection(workflow_id=workflow_id, status="failed")
        with database.writer() as conn:
            replay_id = replay.enqueue(conn, selection, requested_by="ops", reason="notifier fixed")["replay_id"]
        with database.writer() as conn:
            slow = replay_queue.claim(conn, worker="slow", lease_seconds=0, replay_id=replay_id)
        with database.writer() as conn:  # the lease of 0 s has run out: another worker takes the item
            fast = replay_queue.claim(conn, worker="fast", lease_seconds=0, replay_id=replay_id)
        assert slow.id == fast.id
        assert replay_queue.process(database, runner, slow, worker="slow") == "lost"
        assert replay_queue.process(database, runner, fast, worker="fast") == "done"
    finally:
        BROKEN.clear()
        runner.shutdown(wait=False)
    with database.reader() as conn:
        progress = replay.get_replay(conn, replay_id)
        executions = conn.execute(sa.text("SELECT count(*) FROM executions WHERE replay_id = :r"),
                                  {"r": replay_id}).scalar_one()
    assert progress["progress"]["done"] == 1 and executions == 1  # re-processing reused the same execution
    assert CALLS[str(event_id)] == 1



HOLD, HELD = threading.Event(), threading.Event()


def slow_notify(context, **params):
    """Holds the replay worker inside the item until the test lets it go."""
    HELD.set()
    assert HOLD.wait(60)
    return {"notified": context["customer"]}


def refuse(context, **params):
    raise RuntimeError("downstream rejected the request")


def test_a_live_worker_keeps_its_lease_while_an_item_takes_longer_than_the_lease(database, runtime):
    workflow_id, source = unique("renew"), unique("shop")
    save_notifier(database, workflow_id, source, "tests.slow")
    failing = Runner(database, runtime.payloads, threads=1, actions={"tests.slow": refuse})
    try:
        ingest_and_route(database, runtime, failing, source=source, event_type="order.paid",
                         payload={"order": 1, "customer": "C-1"})
        assert failing.wait_idle(timeout=60)
    finally:
        failing.shutdown(wait=False)
    with database.writer() as conn:
        replay_id = replay.enqueue(conn, replay.Selection(workflow_id=workflow_id, status="failed"),
                                   requested_by="ops", reason="notifier fixed")["replay_id"]
    runner = Runner(database, runtime.payloads, threads=1, actions={"tests.slow": slow_notify})
    HOLD.clear(), HELD.clear()
    finished: list[int] = []
    worker = threading.Thread(target=lambda: finished.append(replay_queue.work(
        database, runner, replay_id=replay_id, lease_seconds=3, poll_seconds=0.1, name="live")))
    worker.start()
    try:
        assert HELD.wait(60)
        claimed_at = "SELECT claimed_at FROM replay_items WHERE replay_id = :r"
        with database.reader() as conn:
            first = conn.execute(sa.text(claimed_at), {"r": replay_id}).scalar_one()
        # the worker renews its lease (every second for a 3 s lease) while the action holds it
        assert wait_for(lambda: _read(database, claimed_at, replay_id) > first, timeout=30)
        with database.writer() as conn:
            assert replay_queue.claim(conn, worker="other", lease_seconds=3, replay_id=replay_id) is None
    finally:
        HOLD.set()
        worker.join(60)
        runner.shutdown(wait=False)
    with database.reader() as conn:
        item = conn.execute(sa.text("SELECT state, attempts, claimed_by FROM replay_items WHERE replay_id = :r"),
                            {"r": replay_id}).one()
    assert finished == [1] and tuple(item) == ("done", 1, "live")


def _read(database, sql: str, replay_id):
    with database.reader() as conn:
        return conn.execute(sa.text(sql), {"r": replay_id}).scalar_one()
