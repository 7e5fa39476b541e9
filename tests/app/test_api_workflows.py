"""Workflow API: definitions with every problem listed, versions, runs answered 202 at once, cancel."""
from __future__ import annotations

import concurrent.futures
import threading

import pytest

from tests.services.runner_helpers import Downstream, audits_of, status_of, steps_of, unique, wait_for, wait_status


@pytest.fixture
def downstream():
    server = Downstream()
    yield server
    server.close()


def definition(workflow_id: str, url: str, **extra) -> dict:
    return {"id": workflow_id, "name": "API workflow", "trigger": {"type": "manual"},
            "steps": [{"name": "call", "type": "action", "url": url, "body": {"n": "{{ trigger.n }}"}}], **extra}


def test_an_invalid_definition_is_answered_422_with_every_problem(client):
    response = client.post("/api/v1/workflows", json={"id": "x", "trigger": {"type": "event"},
                                                      "steps": [{"name": "s", "type": "teleport"}]})
    assert response.status_code == 422
    body = response.get_json()
    assert len(body["errors"]) >= 2
    assert any("name" in p for p in body["errors"])


def test_yaml_post_then_put_creates_versions_only_for_changes(client):
    workflow_id = unique("api-wf")
    yaml_text = (f"id: {workflow_id}\nname: first\ntrigger: {{type: manual}}\n"
                 "steps:\n  - {name: shape, type: transform, fields: {a: trigger.a}}\n")
    created = client.post("/api/v1/workflows", data=yaml_text, content_type="application/yaml",
                          headers={"X-Actor": "ana"})
    assert created.status_code == 201 and created.get_json()["version"] == 1
    assert client.post("/api/v1/workflows", data=yaml_text, content_type="application/yaml").status_code == 409
    assert client.put(f"/api/v1/workflows/{workflow_id}", data=yaml_text).get_json()["version"] == 1
    changed = client.put(f"/api/v1/workflows/{workflow_id}", data=yaml_text.replace("first", "second"))
    assert changed.status_code == 200 and changed.get_json()["version"] == 2
    assert client.get(f"/api/v1/workflows/{workflow_id}").get_json()["definition"]["name"] == "second"
    assert client.get(f"/api/v1/workflows/{workflow_id}?version=1").get_json()["created_by"] == "ana"
    listed = {w["workflow_id"] for w in client.get("/api/v1/workflows").get_json()["items"]}
    assert workflow_id in listed
    assert client.get("/api/v1/workflows/nope-" + workflow_id).status_code == 404


def test_run_answers_202_before_the_run_finishes(client, database, downstream):
    workflow_id = unique("api-run")
    downstream.gates["/block"] = threading.Event()
    assert client.post("/api/v1/workflows", json=definition(workflow_id, f"{downstream.url}/block")).status_code == 201
    response = client.post(f"/api/v1/workflows/{workflow_id}/run", json={"n": 1})
    assert response.status_code == 202
    execution_id = response.get_json()["execution_id"]
    assert downstream.entered.setdefault("/block", threading.Event()).wait(10)
    assert status_of(database, execution_id) in ("pending", "running")
    downstream.gates["/block"].set()
    assert wait_status(database, execution_id) == "completed"


def test_fifty_concurrent_runs_complete_with_separate_records(app, database, downstream):
    workflow_id = unique("api-fifty")
    with app.test_client() as client:
        created = client.post("/api/v1/workflows", json=definition(workflow_id, f"{downstream.url}/echo"))
        assert created.status_code == 201

    def run(n: int) -> tuple[int, str]:
        with app.test_client() as c:
            response = c.post(f"/api/v1/workflows/{workflow_id}/run", json={"n": n})
            assert response.status_code == 202
            return n, response.get_json()["execution_id"]

    with concurrent.futures.ThreadPoolExecutor(10) as pool:
        runs = dict(pool.map(run, range(50)))
    assert len(set(runs.values())) == 50
    for execution_id in runs.values():
        assert wait_status(database, execution_id, timeout=60) == "completed"
    with app.test_client() as client:
        for n, execution_id in runs.items():
            record = client.get(f"/api/v1/executions/{execution_id}").get_json()
            (step,) = record["steps"]
            assert record["trigger_payload"] == {"n": n}
            assert step["input"]["body"] == {"n": n} and step["output"]["body"]["echo"] == {"n": n}
            assert step["external_request_id"] == f"req-{step['output']['body']['n']}"
    assert downstream.hits["/echo"] == 50


def test_cancel_endpoint_records_who_and_why_and_refuses_a_second_cancel(client, database, downstream):
    workflow_id = unique("api-cancel")
    body = definition(workflow_id, f"{downstream.url}/x")
    body["steps"].insert(0, {"name": "pause", "type": "wait", "seconds": 30})
    client.post("/api/v1/workflows", json=body)
    execution_id = client.post(f"/api/v1/workflows/{workflow_id}/run", json={"n": 1}).get_json()["execution_id"]
    wait_for(lambda: any(a["event_type"] == "WAITING" for a in audits_of(database, execution_id)))
    response = client.post(f"/api/v1/executions/{execution_id}/cancel",
                           json={"cancelled_by": "ops@example.com", "reason": "wrong customer"})
    assert response.status_code == 200 and response.get_json()["pending_steps"] == 2
    (audit,) = [a for a in audits_of(database, execution_id) if a["event_type"] == "CANCELLED"]
    assert audit["metadata"]["cancelled_by"] == "ops@example.com"
    assert audit["metadata"]["reason"] == "wrong customer" and audit["metadata"]["pending_task_count"] == 2
    assert client.post(f"/api/v1/executions/{execution_id}/cancel", json={}).status_code == 409
    assert steps_of(database, execution_id) == [] and downstream.hits["/x"] == 0
