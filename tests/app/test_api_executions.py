"""External engines report executions; investigators read them back whole, by API and CLI."""
import json
import uuid

from click.testing import CliRunner

from app.cli import cli


def _report(workflow: str, **overrides) -> dict:
    body = {
        "workflow_id": workflow, "trigger_source": "webhook", "status": "failed",
        "trigger_payload": {"customer": {"id": f"C-{uuid.uuid4().hex[:6]}"}, "order": {"number": "ORD-1"}},
        "started_at": "2026-11-20T10:00:00Z", "completed_at": "2026-11-20T10:00:09Z",
        "steps": [
            {"step_name": "create_deal", "status": "completed", "input": {"deal": 1}, "output": {"crm_id": "D-1"},
             "started_at": "2026-11-20T10:00:00Z", "completed_at": "2026-11-20T10:00:02Z",
             "external_request_id": "req-crm-1", "response_status": 201},
            {"step_name": "send_email", "status": "failed", "attempt": 1, "error_message": "HTTP 503 from mail",
             "started_at": "2026-11-20T10:00:02Z", "completed_at": "2026-11-20T10:00:04Z", "response_status": 503},
            {"step_name": "send_email", "seq": 1, "status": "failed", "attempt": 2,
             "error_message": "HTTP 503 from mail", "started_at": "2026-11-20T10:00:06Z",
             "completed_at": "2026-11-20T10:00:09Z"},
        ],
        "logs": [{"message": "retrying send_email", "level": "warning"}],
    }
    body.update(overrides)
    return body


def test_a_batch_report_is_recorded_with_steps_in_order_and_answered_201(client):
    workflow = f"wf-api-{uuid.uuid4().hex[:6]}"
    response = client.post("/api/v1/executions", json={"executions": [_report(workflow), _report(workflow)]})
    assert response.status_code == 201
    ids = [e["execution_id"] for e in response.get_json()["executions"]]
    assert len(set(ids)) == 2

    detail = client.get(f"/api/v1/executions/{ids[0]}").get_json()
    assert detail["status"] == "failed" and detail["failed_step"] == "send_email"
    assert detail["error_message"] == "HTTP 503 from mail"
    assert [(s["step_name"], s["attempt_count"]) for s in detail["steps"]] == [
        ("create_deal", 1), ("send_email", 1), ("send_email", 2)]
    assert detail["steps"][0]["output"] == {"crm_id": "D-1"}
    assert detail["steps"][0]["external_request_id"] == "req-crm-1"
    assert detail["started_at"].startswith("2026-11-20T10:00:00") and detail["duration_ms"] == 9000
    assert [line["message"] for line in detail["logs"]] == ["retrying send_email"]
    assert {"CREATED", "STARTED", "FAILED"} <= {e["event_type"] for e in detail["audit_events"]}


def test_resending_the_same_execution_id_is_idempotent(client):
    workflow = f"wf-api-{uuid.uuid4().hex[:6]}"
    execution_id = str(uuid.uuid4())
    first = client.post("/api/v1/executions", json=_report(workflow, execution_id=execution_id))
    again = client.post("/api/v1/executions", json=_report(workflow, execution_id=execution_id))
    assert first.get_json()["executions"][0]["created"] is True
    assert again.status_code == 201 and again.get_json()["executions"][0]["created"] is False
    detail = client.get(f"/api/v1/executions/{execution_id}").get_json()
    assert len(detail["steps"]) == 3


def test_an_invalid_report_lists_every_problem_and_stores_nothing(client):
    workflow = f"wf-api-{uuid.uuid4().hex[:6]}"
    bad = _report(workflow, status="exploded", trigger_source="carrier-pigeon")
    bad["steps"][0]["step_type"] = "teleport"
    response = client.post("/api/v1/executions", json={"executions": [_report(workflow), bad]})
    assert response.status_code == 422
    problem = response.get_json()
    assert len(problem["errors"]) == 3
    assert client.get(f"/api/v1/executions?workflow_id={workflow}").get_json()["items"] == []


def test_a_body_that_is_not_json_is_a_problem(client):
    response = client.post("/api/v1/executions", data=b"{nope", content_type="application/json")
    assert response.status_code == 422 and response.mimetype == "application/problem+json"


def test_executions_are_found_by_an_embedded_payload_field(client):
    workflow = f"wf-api-{uuid.uuid4().hex[:6]}"
    wanted = _report(workflow)
    client.post("/api/v1/executions", json={"executions": [wanted, _report(workflow)]})
    customer = wanted["trigger_payload"]["customer"]["id"]
    found = client.get(f"/api/v1/executions?payload.customer.id={customer}").get_json()["items"]
    assert len(found) == 1 and found[0]["workflow_id"] == workflow


def test_unknown_execution_is_404_and_a_bad_id_is_422(client):
    assert client.get(f"/api/v1/executions/{uuid.uuid4()}").status_code == 404
    assert client.get("/api/v1/executions/42").status_code == 422


def test_cli_inspect_json_includes_the_audit_events(client, database, tmp_path):
    workflow = f"wf-cli-{uuid.uuid4().hex[:6]}"
    execution_id = client.post("/api/v1/executions", json=_report(workflow)).get_json()["executions"][0][
        "execution_id"]
    env = {"DATABASE_URL": database.admin_url.render_as_string(hide_password=False),
           "FLOWLEDGER_DATA_DIR": str(tmp_path)}
    result = CliRunner().invoke(cli, ["execution", "inspect", execution_id, "--json"], env=env)
    assert result.exit_code == 0, result.output
    record = json.loads(result.output)
    assert record["execution_id"] == execution_id
    assert [e["event_type"] for e in record["audit_events"]][0] == "CREATED"

    human = CliRunner().invoke(cli, ["execution", "inspect", execution_id], env=env)
    assert "send_email" in human.output and "HTTP 503 from mail" in human.output


def test_a_batch_answers_per_item_whether_each_execution_was_created(client):
    workflow = f"wf-api-{uuid.uuid4().hex[:6]}"
    known, fresh = str(uuid.uuid4()), str(uuid.uuid4())
    client.post("/api/v1/executions", json=_report(workflow, execution_id=known))
    body = {"executions": [_report(workflow, execution_id=known), _report(workflow, execution_id=fresh),
                           _report(workflow, execution_id=fresh)]}
    response = client.post("/api/v1/executions", json=body)
    assert response.status_code == 201
    assert [(e["execution_id"], e["created"]) for e in response.get_json()["executions"]] == [
        (known, False), (fresh, True), (fresh, False)]
    assert len(client.get(f"/api/v1/executions/{fresh}").get_json()["steps"]) == 3


def test_an_unstorable_trigger_payload_late_in_a_batch_is_422_and_stores_nothing(client):
    workflow = f"wf-api-{uuid.uuid4().hex[:6]}"
    body = {"executions": [_report(workflow), _report(workflow, trigger_payload={"note": "nul \u0000"})]}
    response = client.post("/api/v1/executions", json=body)
    assert response.status_code == 422 and response.mimetype == "application/problem+json"
    assert client.get(f"/api/v1/executions?workflow_id={workflow}").get_json()["items"] == []


def test_the_api_body_is_the_service_record_with_payloads_non_ascii_included(client, app, runtime):
    from services import inspection

    workflow = f"wf-api-{uuid.uuid4().hex[:6]}"
    report = _report(workflow, trigger_payload={"customer": {"name": "Zoë Ødegård", "city": "Zürich"}})
    report["steps"][0]["output"] = {"crm_id": "D-1", "note": "größer ✓", "amounts": [1.5, 2, None]}
    execution_id = client.post("/api/v1/executions", json=report).get_json()["executions"][0]["execution_id"]
    response = client.get(f"/api/v1/executions/{execution_id}")
    assert response.status_code == 200 and response.mimetype == "application/json"
    with runtime.database.reader() as conn:
        record = inspection.get_execution(conn, runtime.payloads, uuid.UUID(execution_id))
    with app.app_context():
        expected = json.loads(app.json.dumps(record))
    assert json.loads(response.get_data(as_text=True)) == expected
    assert expected["steps"][0]["output"] == {"crm_id": "D-1", "note": "größer ✓", "amounts": [1.5, 2, None]}
    assert expected["trigger_payload"]["customer"]["name"] == "Zoë Ødegård"


def test_a_batch_over_its_own_limit_is_413_naming_the_setting_and_stores_nothing(client, runtime, monkeypatch):
    """Batches have a larger limit than events: 100 executions of 10 steps with 8 KB payloads pass 10 MB."""
    workflow = f"wf-api-{uuid.uuid4().hex[:6]}"
    body = json.dumps({"executions": [_report(workflow) for _ in range(3)]})
    monkeypatch.setattr(runtime.settings, "max_body_bytes", 10)  # the events' limit does not apply here
    assert client.post("/api/v1/executions", data=body, content_type="application/json").status_code == 201
    workflow = f"wf-api-{uuid.uuid4().hex[:6]}"
    body = json.dumps({"executions": [_report(workflow) for _ in range(3)]})
    monkeypatch.setattr(runtime.settings, "max_batch_body_bytes", len(body) - 1)
    response = client.post("/api/v1/executions", data=body, content_type="application/json")
    assert response.status_code == 413 and response.mimetype == "application/problem+json"
    assert "FLOWLEDGER_MAX_BATCH_BODY_BYTES" in response.get_json()["detail"]
    assert client.get(f"/api/v1/executions?workflow_id={workflow}").get_json()["items"] == []


def test_runs_are_listed_by_when_they_finished_and_a_bad_bound_is_422(client):
    workflow = f"wf-api-{uuid.uuid4().hex[:6]}"
    runs = [("2026-11-20T09:50:00Z", "2026-11-20T10:10:00Z"),  # started the hour before, failed inside it
            ("2026-11-20T10:30:00Z", "2026-11-20T11:00:00Z"),  # finished on the hour's end: the next hour's
            ("2026-11-20T10:00:00Z", "2026-11-20T10:00:00Z")]  # finished on its first instant
    ids = [client.post("/api/v1/executions", json=_report(workflow, started_at=start, completed_at=end,
                                                          steps=[])).get_json()["executions"][0]["execution_id"]
           for start, end in runs]
    listed = client.get("/api/v1/executions", query_string={
        "workflow_id": workflow, "finished_since": "2026-11-20T10:00:00Z",
        "finished_until": "2026-11-20T11:00:00Z"}).get_json()["items"]
    assert sorted(i["execution_id"] for i in listed) == sorted([ids[0], ids[2]])
    bad = client.get("/api/v1/executions", query_string={"finished_since": "yesterday"})
    assert bad.status_code == 422 and "finished_since" in bad.get_json()["detail"]


def test_a_filter_value_that_names_nothing_is_422_not_an_empty_page(client):
    # a typo must not read as "no failed runs"
    for path, field, value in (("/api/v1/executions", "status", "faield"),
                               ("/api/v1/executions", "trigger_source", "cron"),
                               ("/api/v1/events", "processing_status", "dead"),
                               ("/api/v1/search", "status", "exploded")):
        answer = client.get(path, query_string={field: value, "q": "anything"})
        problem = answer.get_json()
        assert answer.status_code == 422 and answer.content_type == "application/problem+json", (path, problem)
        assert problem["detail"].startswith(f"{field} must be one of ") and repr(value) in problem["detail"]
    assert client.get("/api/v1/executions", query_string={"status": "failed"}).status_code == 200
