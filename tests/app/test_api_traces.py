"""GET /api/v1/executions/<id>/trace, traceparent continuation on reports, and the export worker wiring."""
from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from app.runtime import Runtime
from services import trace_export, tracing
from services.tracecontext import new_span_id, new_trace_id, traceparent
from tests.fixtures.otlp import OtlpReceiver


def _report(workflow_id: str, **extra) -> dict:
    t0 = datetime.now(UTC) - timedelta(minutes=3)
    iso = [(t0 + timedelta(seconds=s)).isoformat() for s in range(8)]
    return {
        "workflow_id": workflow_id, "status": "failed", "trigger_source": "webhook",
        "started_at": iso[0], "completed_at": iso[7], **extra,
        "steps": [
            {"step_name": "lookup", "status": "completed", "started_at": iso[1], "completed_at": iso[2],
             "external_request_id": "crm-77", "response_status": 200},
            {"step_name": "push", "seq": 1, "status": "failed", "started_at": iso[2], "completed_at": iso[3],
             "error_message": "503 from CRM", "response_status": 503},
            {"step_name": "push", "seq": 1, "attempt": 2, "status": "failed", "started_at": iso[4],
             "completed_at": iso[5], "error_message": "503 from CRM", "response_status": 503},
        ]}


def _post(client, body: dict) -> dict:
    response = client.post("/api/v1/executions", json=body)
    assert response.status_code == 201, response.get_json()
    return response.get_json()["executions"][0]


def _spans(trace: dict) -> list[dict]:
    [resource_spans] = trace["resourceSpans"]
    [scope_spans] = resource_spans["scopeSpans"]
    return scope_spans["spans"]


def _attr(span: dict, key: str):
    return next(a["value"] for a in span["attributes"] if a["key"] == key)


def test_the_trace_endpoint_returns_one_span_per_step_attempt_plus_the_root_with_parent_links(client):
    workflow_id = f"wf-api-trace-{uuid.uuid4().hex[:8]}"
    created = _post(client, _report(workflow_id))

    response = client.get(f"/api/v1/executions/{created['execution_id']}/trace")

    assert response.status_code == 200
    trace = response.get_json()
    resource = {a["key"]: a["value"] for a in trace["resourceSpans"][0]["resource"]["attributes"]}
    assert resource["service.name"] == {"stringValue": "flowledger"}
    assert resource["flowledger.workflow.id"] == {"stringValue": workflow_id}
    spans = _spans(trace)
    inspected = client.get(f"/api/v1/executions/{created['execution_id']}").get_json()
    root, *steps = spans
    assert len(steps) == len(inspected["steps"]) == 3
    assert {s["traceId"] for s in spans} == {created["trace_id"]}
    assert root["spanId"] == inspected["root_span_id"] and "parentSpanId" not in root
    assert [s["spanId"] for s in steps] == [s["span_id"] for s in inspected["steps"]]
    assert [s["parentSpanId"] for s in steps] == [root["spanId"], steps[0]["spanId"], steps[1]["spanId"]]
    assert [s["name"] for s in steps] == ["lookup #1", "push #1", "push #2"]
    assert root["name"] == workflow_id
    assert root["status"] == {"code": 2, "message": "503 from CRM"}
    assert steps[2]["status"] == {"code": 2, "message": "503 from CRM"}
    assert _attr(steps[0], "flowledger.step.external_request_id") == {"stringValue": "crm-77"}
    assert _attr(steps[2], "flowledger.step.attempt") == {"intValue": "2"}
    assert _attr(steps[2], "http.response.status_code") == {"intValue": "503"}
    assert steps[0]["kind"] == 3  # CLIENT: it called a downstream system
    assert int(root["endTimeUnixNano"]) - int(root["startTimeUnixNano"]) == 7 * 10**9
    assert all(isinstance(s["startTimeUnixNano"], str) for s in spans)


def test_a_reported_execution_continues_the_incoming_traceparent(client):
    trace_id, span_id = new_trace_id(), new_span_id()
    body = _report(f"wf-api-trace-{uuid.uuid4().hex[:8]}", traceparent=traceparent(trace_id, span_id))

    created = _post(client, body)
    spans = _spans(client.get(f"/api/v1/executions/{created['execution_id']}/trace").get_json())

    assert created["trace_id"] == trace_id
    assert {s["traceId"] for s in spans} == {trace_id}
    assert spans[0]["parentSpanId"] == span_id
    assert spans[1]["parentSpanId"] == spans[0]["spanId"]


def test_the_trace_of_an_unknown_execution_is_a_404_problem(client):
    response = client.get(f"/api/v1/executions/{uuid.uuid4()}/trace")
    assert response.status_code == 404
    assert response.content_type.startswith("application/problem+json")
    assert client.get("/api/v1/executions/not-a-uuid/trace").status_code == 422


def test_an_app_with_an_otlp_endpoint_exports_reported_executions_in_the_background(
        runtime, monkeypatch: pytest.MonkeyPatch):
    from app.factory import create_app

    monkeypatch.setattr(tracing, "_export", {"enabled": False, "running_delay_s": 30.0})
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    receiver = OtlpReceiver().start()
    settings = runtime.settings.model_copy(update={
        "otlp_endpoint": receiver.endpoint, "otlp_drain_interval_seconds": 0.05, "otlp_timeout_seconds": 2})
    app = create_app(runtime=Runtime(settings=settings, database=runtime.database), start_scheduler=False)
    worker = app.extensions["otlp_export_worker"]
    try:
        assert tracing.export_enabled()
        created = _post(app.test_client(), _report(f"wf-api-trace-{uuid.uuid4().hex[:8]}"))
        got = receiver.wait_for(created["trace_id"], 4)  # polls with a deadline: the worker is a thread
    finally:
        worker.stop()
        receiver.stop()
    assert len({s["span_id"] for s in got}) == 4
    assert not worker._thread.is_alive()
    rows = trace_export.queued_exports(runtime.database, uuid.UUID(created["execution_id"]))
    assert ("final", "sent") in [(r["kind"], r["state"]) for r in rows]
