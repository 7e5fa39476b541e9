"""Replay and recovery: replay one event, plan or enqueue a bulk replay, its progress, the DLQ, lineage."""
from __future__ import annotations

from flask import Blueprint, Flask, Response, jsonify, request

from app.api_common import parse_limit, parse_time, parse_uuid, runtime
from app.api_workflows import actor, json_body, runner_of
from app.runtime import Runtime
from services import dlq, lineage, replay
from services.errors import InvalidInput

bp = Blueprint("replay", __name__, url_prefix="/api/v1")


@bp.post("/events/<event_id>/replay")
def replay_event(event_id: str) -> Response:
    """Resubmit the stored event to the router as if fresh; 202 with the new execution ids."""
    rt = runtime()
    body = json_body()
    runner = runner_of(rt)
    with rt.database.writer() as conn:
        result = replay.replay_event(conn, rt.payloads, event_id=parse_uuid(event_id, "event id"),
                                     requested_by=body.get("requested_by") or actor(request),
                                     reason=body.get("reason"), workflow_id=body.get("workflow_id"))
    for execution_id in result["executions"]:
        runner.submit(execution_id)
    return jsonify(result), 202


@bp.post("/replays")
def create_replay() -> Response:
    """A bulk replay: with dry_run a plan (200), otherwise queued for the replay workers (202 with its id)."""
    rt = runtime()
    body = json_body()
    unknown = set(body) - {"selection", "reason", "dry_run", "force", "requested_by"}
    if unknown:
        raise InvalidInput(f"unknown fields: {', '.join(sorted(unknown))}")
    selection = replay.parse_selection(body.get("selection"))
    force = bool(body.get("force", False))
    if body.get("dry_run"):
        with rt.database.reader() as conn:
            return jsonify(replay.plan(conn, selection, force=force)), 200
    runner_of(rt)
    with rt.database.writer() as conn:
        queued = replay.enqueue(conn, selection, requested_by=body.get("requested_by") or actor(request),
                                reason=body.get("reason") or "", force=force)
    rt.extras["replay_workers"].kick()
    return jsonify(**queued, links={"progress": f"/api/v1/replays/{queued['replay_id']}"}), 202


@bp.get("/replays/<replay_id>")
def get_replay(replay_id: str) -> Response:
    """Who asked, when and why, and progress: queued, running, done, failed."""
    with runtime().database.reader() as conn:
        return jsonify(replay.get_replay(conn, parse_uuid(replay_id, "replay id")))


@bp.get("/dlq")
def list_dlq() -> Response:
    """Dead-lettered events newest first, with their last failure."""
    args = request.args
    with runtime().database.reader() as conn:
        return jsonify(dlq.list_dead_lettered(
            conn, source_system=args.get("source_system"), event_type=args.get("event_type"),
            since=parse_time(args, "since"), until=parse_time(args, "until"), cursor=args.get("cursor"),
            limit=parse_limit(args)))


@bp.get("/events/<event_id>/lineage")
def get_lineage(event_id: str) -> Response:
    """The event's executions as a tree: originals, their replays, replays of replays."""
    with runtime().database.reader() as conn:
        return jsonify(lineage.lineage(conn, parse_uuid(event_id, "event id")))


def init_app(server: Flask, rt: Runtime) -> None:
    """Register the replay endpoints."""
    server.register_blueprint(bp)
