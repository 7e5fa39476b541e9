"""The runner: timeout, condition-false, wait, cancel, retries and secrets each leave the right record."""
from __future__ import annotations

import threading
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from services import inspection, payloads, router
from services.runner import Runner
from tests.services.runner_helpers import (
    audits_of,
    save,
    status_of,
    steps_of,
    unique,
    wait_for,
    wait_status,
)


@pytest.fixture
def runner(database, runtime):
    runner = Runner(database, runtime.payloads, threads=2, secrets={"crm_token": "s3cr3t-token-value"})
    yield runner
    runner.shutdown(wait=False)


def manual(workflow_id: str, steps: list[dict]) -> dict:
    return {"id": workflow_id, "name": workflow_id, "trigger": {"type": "manual"}, "steps": steps}


def test_a_step_past_its_timeout_ends_the_execution_timed_out(database, runner, downstream):
    workflow_id = unique("timeout")
    downstream.gates["/slow"] = threading.Event()
    save(database, manual(workflow_id, [{"name": "slow_call", "type": "action", "url": f"{downstream.url}/slow",
                                         "timeout_seconds": 0.3, "max_attempts": 3}]))
    execution_id = runner.start(workflow_id=workflow_id, payload={"x": 1})
    assert wait_status(database, execution_id) == "timed_out"
    downstream.gates["/slow"].set()
    (step,) = steps_of(database, execution_id)
    assert (step["status"], step["attempt"]) == ("timed_out", 1)
    timed_out = [a for a in audits_of(database, execution_id) if a["event_type"] == "TIMED_OUT"]
    assert timed_out and timed_out[0]["metadata"]["failed_task_id"] == "slow_call"


def test_a_false_condition_skips_the_following_steps_and_completes(database, runner, downstream):
    workflow_id = unique("condition")
    save(database, manual(workflow_id, [
        {"name": "big_only", "type": "condition", "expression": "trigger.amount > `100`"},
        {"name": "call_crm", "type": "action", "url": f"{downstream.url}/crm"}]))
    execution_id = runner.start(workflow_id=workflow_id, payload={"amount": 5})
    assert wait_status(database, execution_id) == "completed"
    assert [(s["step_name"], s["status"]) for s in steps_of(database, execution_id)] == [
        ("big_only", "completed"), ("call_crm", "skipped")]
    assert downstream.hits["/crm"] == 0
    types = [a["event_type"] for a in audits_of(database, execution_id)]
    assert types[0] == "CREATED" and "STARTED" in types and types[-1] == "COMPLETED"
    change = [a for a in audits_of(database, execution_id) if a["event_type"] == "STATE_CHANGE"][-1]
    assert change["metadata"]["reason"] == "condition_false"


def test_a_wait_holds_no_worker_thread(database, runtime, downstream):
    runner = Runner(database, runtime.payloads, threads=1)
    try:
        waiting_id, quick_id = unique("waits"), unique("quick")
        save(database, manual(waiting_id, [
            {"name": "pause", "type": "wait", "seconds": 1.0},
            {"name": "shape", "type": "transform", "fields": {"doubled": "trigger.n"}}]))
        save(database, manual(quick_id, [{"name": "echo", "type": "action", "url": f"{downstream.url}/echo"}]))
        waiting = runner.start(workflow_id=waiting_id, payload={"n": 7})
        wait_for(lambda: any(a["event_type"] == "WAITING" for a in audits_of(database, waiting)))
        quick = runner.start(workflow_id=quick_id, payload={})
        # One worker thread only: the quick run can finish only if the wait gave its thread back.
        assert wait_status(database, quick, timeout=5) == "completed"
        assert status_of(database, waiting) == "running"
        assert wait_status(database, waiting) == "completed"
    finally:
        runner.shutdown(wait=False)
    pause, shape = steps_of(database, waiting)
    assert pause["status"] == "completed" and pause["wait_ms"] >= 1000
    assert shape["status"] == "completed"


def test_cancelling_a_waiting_execution_records_who_why_and_pending_steps(database, runner, downstream):
    workflow_id = unique("cancel")
    save(database, manual(workflow_id, [
        {"name": "first", "type": "transform", "fields": {"a": "trigger.a"}},
        {"name": "pause", "type": "wait", "seconds": 30},
        {"name": "call", "type": "action", "url": f"{downstream.url}/never"}]))
    execution_id = runner.start(workflow_id=workflow_id, payload={"a": 1})
    wait_for(lambda: any(a["event_type"] == "WAITING" for a in audits_of(database, execution_id)))
    result = runner.cancel(execution_id, cancelled_by="ops@example.com", reason="customer asked")
    assert result["pending_steps"] == 2
    assert status_of(database, execution_id) == "cancelled"
    (cancelled,) = [a for a in audits_of(database, execution_id) if a["event_type"] == "CANCELLED"]
    assert cancelled["metadata"] == {**cancelled["metadata"], "cancelled_by": "ops@example.com",
                                     "reason": "customer asked", "pending_task_count": 2}
    assert downstream.hits["/never"] == 0


def test_retries_record_every_attempt_and_secrets_are_never_stored(database, runtime, runner, downstream):
    workflow_id = unique("retries")
    downstream.statuses["/flaky"] = 502
    save(database, manual(workflow_id, [{
        "name": "post", "type": "action", "url": f"{downstream.url}/flaky", "max_attempts": 3,
        "backoff_seconds": 0.01, "headers": {"Authorization": "Bearer {{ secret.crm_token }}"},
        "body": {"customer": "{{ trigger.customer }}"}}]))
    execution_id = runner.start(workflow_id=workflow_id, payload={"customer": "C-9"})
    assert wait_status(database, execution_id) == "failed"
    attempts = steps_of(database, execution_id)
    assert [(s["attempt"], s["status"], s["response_status"]) for s in attempts] == [
        (1, "failed", 502), (2, "failed", 502), (3, "failed", 502)]
    assert [s["external_request_id"] for s in attempts] == ["req-1", "req-2", "req-3"]
    with database.reader() as conn:
        record = inspection.get_execution(conn, runtime.payloads, execution_id)
        ids = conn.execute(sa.text("SELECT payload_id FROM payloads WHERE execution_id = :e"),
                           {"e": execution_id}).scalars().all()
        stored = b"".join(payloads.load_raw(conn, runtime.payloads, i) for i in ids)
    assert record["steps"][0]["input"]["headers"]["Authorization"] in ("***", "Bearer ***")
    assert record["steps"][0]["input"]["body"] == {"customer": "C-9"}
    assert record["steps"][0]["output"]["status"] == 502
    assert "s3cr3t" not in str(record) and b"s3cr3t" not in stored and len(ids) >= 6


def test_due_schedules_start_one_schedule_execution_per_slot(database, runner, downstream):
    workflow_id = unique("cron")
    save(database, {"id": workflow_id, "name": "hourly", "trigger": {"type": "schedule", "cron": "0 * * * *"},
                    "steps": [{"name": "ping", "type": "action", "url": f"{downstream.url}/ping"}]})
    now = datetime(2031, 5, 1, 10, 0, 30, tzinfo=UTC)
    started = router.run_due_schedules(database, runner, now=now)
    again = router.run_due_schedules(database, runner, now=now)
    with database.reader() as conn:
        mine = conn.execute(sa.text("SELECT execution_id, trigger_source FROM executions WHERE workflow_id = :w"),
                            {"w": workflow_id}).all()
    assert len(mine) == 1 and mine[0].trigger_source == "schedule" and mine[0].execution_id in started
    assert mine[0].execution_id not in again
    assert wait_status(database, mine[0].execution_id) == "completed"
