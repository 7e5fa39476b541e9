"""Replay API: an ingested event routed, dead-lettered, listed in the DLQ, replayed, planned and queued."""
from __future__ import annotations

import uuid

import pytest

from tests.services.runner_helpers import Downstream, event_status, unique, wait_for, wait_status


@pytest.fixture
def downstream():
    server = Downstream()
    yield server
    server.close()


def test_an_ingested_event_is_routed_dead_lettered_listed_and_replayed(client, database, downstream):
    workflow_id, source = unique("api-replay"), unique("crm")
    client.post("/api/v1/workflows", json={
        "id": workflow_id, "name": "deal won", "trigger": {"type": "event", "source": source, "event_type": "deal.won"},
        "steps": [{"name": "crm", "type": "action", "url": f"{downstream.url}/crm"},
                  {"name": "email", "type": "action", "url": f"{downstream.url}/email", "max_attempts": 2}]})
    downstream.statuses["/email"] = 503
    accepted = client.post(f"/api/v1/events/{source}", json={"deal_id": "D-7"}, headers={"X-Event-Type": "deal.won"})
    assert accepted.status_code == 202
    event_id = accepted.get_json()["event_id"]
    wait_for(lambda: event_status(database, event_id) == "dead_lettered")

    dead = client.get(f"/api/v1/dlq?source_system={source}").get_json()["items"]
    assert [d["event_id"] for d in dead] == [event_id] and dead[0]["last_failure"]["failed_step"] == "email"

    plan = client.post("/api/v1/replays", json={"dry_run": True, "selection": {"source_system": source,
                                                                                "status": "failed"}}).get_json()
    assert plan["count"] == 1
    assert plan["workflows"][0]["steps"] == [
        {"name": "crm", "type": "action", "side_effect": True, "rerun": 0, "skipped": 1},
        {"name": "email", "type": "action", "side_effect": True, "rerun": 1, "skipped": 0}]
    assert client.post("/api/v1/replays", json={"selection": {"source_system": source}}).status_code == 422

    downstream.statuses["/email"] = 200
    replayed = client.post(f"/api/v1/events/{event_id}/replay", json={"reason": "email back"},
                           headers={"X-Actor": "ops"})
    assert replayed.status_code == 202
    (execution_id,) = replayed.get_json()["executions"]
    assert wait_status(database, execution_id) == "completed"
    wait_for(lambda: event_status(database, event_id) == "processed")
    assert downstream.hits["/crm"] == 1
    tree = client.get(f"/api/v1/events/{event_id}/lineage").get_json()
    (root,) = tree["executions"]
    assert [r["execution_id"] for r in root["replays"]] == [execution_id]
    assert client.get(f"/api/v1/dlq?source_system={source}").get_json()["items"] == []


def test_a_bulk_replay_is_queued_with_who_and_why_and_reports_progress(client, database, downstream):
    workflow_id, source = unique("api-bulk"), unique("shop")
    client.post("/api/v1/workflows", json={
        "id": workflow_id, "name": "bulk", "trigger": {"type": "event", "source": source, "event_type": "*"},
        "steps": [{"name": "notify", "type": "action", "url": f"{downstream.url}/notify"}]})
    downstream.statuses["/notify"] = 500
    ids = [client.post(f"/api/v1/events/{source}", json={"n": n}, headers={"X-Event-Type": "order.paid"})
           .get_json()["event_id"] for n in range(3)]
    for event_id in ids:
        wait_for(lambda e=event_id: event_status(database, e) == "dead_lettered")
    downstream.statuses["/notify"] = 200
    queued = client.post("/api/v1/replays", json={"selection": {"source_system": source, "status": "failed"},
                                                  "reason": "notifier fixed"}, headers={"X-Actor": "ana"})
    assert queued.status_code == 202 and queued.get_json()["total"] == 3
    replay_id = queued.get_json()["replay_id"]
    progress = wait_for(lambda: (p := client.get(f"/api/v1/replays/{replay_id}").get_json())["finished"] and p)
    assert progress["progress"] == {"queued": 0, "running": 0, "done": 3, "failed": 0}
    assert (progress["requested_by"], progress["reason"]) == ("ana", "notifier fixed")
    assert {event_status(database, e) for e in ids} == {"processed"}
    assert client.get(f"/api/v1/replays/{uuid.uuid4()}").status_code == 404
