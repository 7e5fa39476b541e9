"""Workflows: define and version them, run one (202 at once), cancel an execution; routes accepted events."""
from __future__ import annotations

import atexit
import json
import logging
from typing import Any

from flask import Blueprint, Flask, Request, Response, g, jsonify, request

from app.api_common import BodyTooLarge, parse_uuid, read_body, runtime
from app.api_events import add_event_hook
from app.runtime import Runtime
from services import replay_queue, router, workflows
from services.errors import InvalidInput
from services.events import IncomingEvent, IngestResult
from services.runner import Runner
from services.tracecontext import parse_traceparent

log = logging.getLogger(__name__)
bp = Blueprint("workflows", __name__, url_prefix="/api/v1")


@bp.post("/workflows")
def create_workflow() -> Response:
    """Create a workflow from a JSON or YAML definition; 201 with its first version, 422 listing every problem."""
    definition = workflows.parse(_body())
    with runtime().database.writer() as conn:
        version = workflows.save_workflow(conn, definition=definition, created_by=actor(request),
                                          change_note=request.args.get("note"), create_only=True)
        row = workflows.get_workflow(conn, definition.id, version=version)
    return jsonify(row), 201


@bp.get("/workflows")
def list_workflows() -> Response:
    """The latest version of every workflow."""
    with runtime().database.reader() as conn:
        return jsonify(items=workflows.list_workflows(conn, trigger_type=request.args.get("trigger")))


@bp.get("/workflows/<workflow_id>")
def get_workflow(workflow_id: str) -> Response:
    """One workflow, its latest version unless ?version=N."""
    raw = request.args.get("version")
    if raw is not None and not raw.isdigit():
        raise InvalidInput(f"version must be a positive integer, got {raw!r}")
    with runtime().database.reader() as conn:
        return jsonify(workflows.get_workflow(conn, workflow_id, version=int(raw) if raw else None))


@bp.put("/workflows/<workflow_id>")
def put_workflow(workflow_id: str) -> Response:
    """Create or change a workflow: a changed definition becomes a new version, an unchanged one is a no-op."""
    definition = workflows.parse(_body(), workflow_id=workflow_id)
    with runtime().database.writer() as conn:
        version = workflows.save_workflow(conn, definition=definition, created_by=actor(request),
                                          change_note=request.args.get("note"))
        row = workflows.get_workflow(conn, workflow_id, version=version)
    return jsonify(row), 200


@bp.post("/workflows/<workflow_id>/run")
def run_workflow(workflow_id: str) -> Response:
    """Start a manual run with the optional JSON body as payload; 202 with the execution id before it runs."""
    body = _body()
    try:
        payload = json.loads(body) if body.strip() else None
    except ValueError:
        raise InvalidInput("run payload must be JSON") from None
    execution_id = runner_of(runtime()).start(workflow_id=workflow_id, payload=payload, trigger_source="manual",
                                              parent=parse_traceparent(request.headers.get("traceparent")))
    return jsonify(execution_id=str(execution_id), status="pending",
                   links={"execution": f"/api/v1/executions/{execution_id}"}), 202


@bp.post("/executions/<execution_id>/cancel")
def cancel_execution(execution_id: str) -> Response:
    """Cancel a running execution; the CANCELLED audit event records who, why and the pending step count."""
    body = json_body()
    result = runner_of(runtime()).cancel(parse_uuid(execution_id, "execution id"),
                                         cancelled_by=body.get("cancelled_by") or actor(request),
                                         reason=body.get("reason"))
    return jsonify(result), 200


def actor(req: Request) -> str:
    """Who is asking: the signed-in user once auth sets one, else the X-Actor header, else 'api'."""
    return getattr(g, "user", None) or req.headers.get("X-Actor") or "api"


def runner_of(rt: Runtime) -> Runner:
    """The process's runner, created on first use and shut down at exit."""
    if "runner" not in rt.extras:
        s = rt.settings
        runner = Runner(rt.database, rt.payloads, threads=s.runner_threads,
                        secrets={k: v.get_secret_value() for k, v in s.workflow_secrets.items()},
                        request_id_header=s.request_id_header)
        rt.extras["runner"] = runner
        rt.extras["replay_workers"] = replay_queue.Workers(rt.database, runner, count=s.replay_workers,
                                                           lease_seconds=s.replay_lease_seconds)
        atexit.register(_shutdown, rt)
    return rt.extras["runner"]


def _shutdown(rt: Runtime) -> None:
    workers = rt.extras.get("replay_workers")
    if workers is not None:
        workers.shutdown()
    runner = rt.extras.get("runner")
    if runner is not None:
        runner.shutdown(wait=False)


def _route(rt: Runtime, result: IngestResult, incoming: IncomingEvent) -> None:
    """The event hook: start an execution of every workflow whose event trigger matches."""
    if not router.may_route(rt.database, source_system=incoming.source_system, event_type=result.event_type):
        return
    runner = runner_of(rt)
    with rt.database.writer() as conn:
        ids = router.route(conn, rt.payloads, event_id=result.event_id, source_system=incoming.source_system,
                           event_type=result.event_type, payload=result.payload)
    for execution_id in ids:
        runner.submit(execution_id, payload=result.payload)


def _body() -> bytes:
    try:
        return read_body(request, runtime().settings.max_body_bytes)
    except BodyTooLarge as exc:
        raise InvalidInput(str(exc)) from None


def json_body() -> dict[str, Any]:
    raw = _body()
    try:
        value = json.loads(raw) if raw.strip() else {}
    except ValueError:
        raise InvalidInput("body must be JSON") from None
    if not isinstance(value, dict):
        raise InvalidInput("body must be a JSON object")
    return value


def init_app(server: Flask, rt: Runtime) -> None:
    """Register the workflow endpoints and the router hook; the runner itself starts on first use."""
    server.register_blueprint(bp)
    if not rt.extras.get("router_hooked"):
        # One hook per runtime: a second app on the same runtime must not route every event twice.
        rt.extras["router_hooked"] = True
        add_event_hook(rt, lambda result, incoming: _route(rt, result, incoming))

