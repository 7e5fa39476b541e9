"""A process that dies mid-run: its executions are swept as interrupted and dead-lettered, never left running."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import sqlalchemy as sa

from services import dlq, recording, recovery
from services.recording import NewExecution
from tests.services.runner_helpers import audits_of, event_status, save, status_of, unique, wait_for

# A serve process in miniature: route one event to a workflow whose second step waits an hour (a wait
# holds no worker: it lives in the runner's memory), print the execution id, then idle until killed.
WORKER = textwrap.dedent("""
    import json, sys, threading
    from sqlalchemy.engine import make_url
    from services import events, router
    from services.db import Database
    from services.objectstore import LocalObjectStore
    from services.payloads import PayloadConfig
    from services.runner import Runner

    url, source, root = sys.argv[1], sys.argv[2], sys.argv[3]
    db = Database(admin_url=make_url(url))
    cfg = PayloadConfig(store=LocalObjectStore(root))
    runner = Runner(db, cfg, threads=2)
    with db.writer() as conn:
        result = events.ingest(conn, events.IncomingEvent(source_system=source, body=b'{"order": "O-1"}',
                               content_type="application/json", event_type="order.paid"), max_depth=50)
        ids = router.route(conn, cfg, event_id=result.event_id, source_system=source, event_type="order.paid",
                           payload=result.payload)
    for execution_id in ids:
        runner.submit(execution_id, payload=result.payload)
    print(json.dumps({"event": str(result.event_id), "executions": [str(i) for i in ids]}), flush=True)
    threading.Event().wait()
""")


def _workflow(database, source: str) -> str:
    workflow_id = unique("recover")
    save(database, {"id": workflow_id, "name": workflow_id,
                    "trigger": {"type": "event", "source": source, "event_type": "order.paid"},
                    "steps": [{"name": "note", "type": "transform", "fields": {"seen": "trigger.order"}},
                              {"name": "cool_off", "type": "wait", "seconds": 3600},
                              {"name": "after", "type": "transform", "fields": {"again": "trigger.order"}}]})
    return workflow_id


def test_an_execution_waiting_in_a_killed_process_is_swept_as_interrupted_and_dead_lettered(database, tmp_path):
    source = unique("src")
    workflow_id = _workflow(database, source)
    url = database.admin_url.render_as_string(hide_password=False)
    proc = subprocess.Popen([sys.executable, "-c", WORKER, url, source, str(tmp_path / "objects")],
                            stdout=subprocess.PIPE, text=True, cwd=Path(__file__).parents[2])
    try:
        started = json.loads(proc.stdout.readline())
        (execution_id,) = [uuid.UUID(i) for i in started["executions"]]
        wait_for(lambda: any(a["event_type"] == "WAITING" for a in audits_of(database, execution_id)))
        later = datetime.now(UTC) + timedelta(hours=2)  # long past the grace period
        # Alive and waiting: its process claims it, so the sweeper leaves it alone however quiet it is.
        # (Other tests' abandoned executions in the shared database may be swept here: only ours matters.)
        assert execution_id not in recovery.sweep(database, now=later)
        assert status_of(database, execution_id) == "running"
    finally:
        proc.kill()  # SIGKILL: no shutdown code runs, the wait is gone with the process
        proc.wait(timeout=30)

    wait_for(lambda: execution_id in recovery.sweep(database, now=later))

    assert status_of(database, execution_id) == "failed"
    with database.reader() as conn:
        last = conn.execute(sa.text("SELECT reason, error_message FROM execution_transitions WHERE execution_id = :e "
                                    "ORDER BY seq DESC LIMIT 1"), {"e": execution_id}).one()
        dead = dlq.list_dead_lettered(conn, source_system=source)
    assert last.reason == "interrupted" and "Replay its event" in last.error_message
    assert event_status(database, started["event"]) == "dead_lettered"
    assert [str(item["event_id"]) for item in dead["items"]] == [started["event"]]
    assert execution_id not in recovery.sweep(database, now=later)  # once only
    with database.reader() as conn:
        ran = conn.execute(sa.text("SELECT step_name FROM steps WHERE execution_id = :e ORDER BY seq"),
                           {"e": execution_id}).scalars().all()
    assert ran[0] == "note" and "after" not in ran and workflow_id


def test_the_sweeper_spares_young_executions_and_those_of_other_engines(database, runtime):
    workflow_id = unique("recover-young")
    save(database, {"id": workflow_id, "name": workflow_id, "trigger": {"type": "manual"},
                    "steps": [{"name": "note", "type": "transform", "fields": {"seen": "trigger.order"}}]})
    with database.writer() as conn:
        ours = recording.create_execution(conn, runtime.payloads, NewExecution(workflow_id=workflow_id))
        reported = recording.create_execution(conn, runtime.payloads, NewExecution(workflow_id=workflow_id,
                                                                                   engine="n8n"))
        recording.start_execution(conn, execution_id=ours.execution_id)
        recording.start_execution(conn, execution_id=reported.execution_id)
    now = datetime.now(UTC)

    assert ours.execution_id not in recovery.sweep(database, now=now)  # younger than the grace period
    swept = recovery.sweep(database, now=now + recovery.GRACE + timedelta(seconds=5))

    assert ours.execution_id in swept and reported.execution_id not in swept
    assert status_of(database, ours.execution_id) == "failed"
    assert status_of(database, reported.execution_id) == "running"  # an external engine reports its own end


def test_claims_survive_a_lost_connection(database):
    claims = recovery.Claims(database, heartbeat_seconds=0.05)
    execution_id = uuid.uuid4()
    key = recovery.claim_key(execution_id)

    def held() -> bool:
        with database.reader() as conn:
            return key in set(conn.execute(recovery._HELD, {"c": recovery.CLAIM_CLASS}).scalars())
    try:
        claims.claim(execution_id)
        assert held()
        with database.admin() as conn:
            conn.execute(sa.text("SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' "
                                 "AND classid = :c AND objid = :k AND objsubid = 2"),
                         {"c": recovery.CLAIM_CLASS, "k": key})
        wait_for(lambda: not held() or None, timeout=10)  # gone with the backend...
        wait_for(held, timeout=10)  # ...and taken again by the heartbeat
        claims.release(execution_id)
        assert not held()
    finally:
        claims.close()


def test_a_bulk_replays_executions_are_left_to_its_queue_while_their_item_is_leased(database, runtime):
    from services import replay, replay_queue, router
    from tests.services.runner_helpers import ingest_and_route

    source = unique("src-replay")
    workflow_id = _workflow(database, source)
    event_id, _ = ingest_and_route(database, runtime, _NoRunner(), source=source, event_type="order.paid",
                                   payload={"order": "O-2"})
    with database.writer() as conn:
        queued = replay.enqueue(conn, replay.Selection(event_ids=[event_id]), requested_by="tests",
                                reason="recovery test", force=True)
        item = replay_queue.claim(conn, worker="worker-that-dies", lease_seconds=300,
                                  replay_id=queued["replay_id"])
        (execution_id,) = router.route(conn, runtime.payloads, event_id=event_id, source_system=source,
                                       event_type="order.paid", payload={"order": "O-2"},
                                       replay_id=item.replay_id, workflow_id=workflow_id)
    later = datetime.now(UTC) + timedelta(hours=1)

    assert execution_id not in recovery.sweep(database, now=later)  # its item's lease brings it to a worker

    with database.writer() as conn:
        replay_queue.finish(conn, item, worker="worker-that-dies", state="failed", execution_ids=[execution_id],
                            error="given up")
    assert execution_id in recovery.sweep(database, now=later)


class _NoRunner:
    """Routes without running: the original executions stay pending (swept or not, they are not the point)."""

    def submit(self, execution_id, payload=None) -> None:
        pass
