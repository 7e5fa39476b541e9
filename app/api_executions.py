"""Executions: external engines report them; anyone with read access inspects them."""
from __future__ import annotations

import json

from flask import Blueprint, Flask, Response, jsonify, request
from sqlalchemy.exc import IntegrityError

from app import auth
from app.api_common import BodyTooLarge, parse_limit, parse_time, parse_uuid, read_body, runtime
from app.problems import problem
from app.runtime import Runtime
from services import deletion, executions, inspection, reporting
from services.errors import InvalidInput

bp = Blueprint("executions", __name__, url_prefix="/api/v1")


@bp.post("/executions")
def report_executions() -> Response:
    """Record one execution or a batch with their steps in one transaction; 201 with ids."""
    rt = runtime()
    try:
        body = read_body(request, rt.settings.max_batch_body_bytes)
    except BodyTooLarge as exc:
        return problem(413, "Payload too large", f"{exc}; send fewer executions per request or raise "
                       "FLOWLEDGER_MAX_BATCH_BODY_BYTES", slug="payload-too-large")
    try:
        parsed = json.loads(body)
    except (ValueError, RecursionError):
        raise InvalidInput("body must be JSON") from None
    reports = reporting.parse_reports(parsed)
    try:
        with rt.database.writer() as conn:
            records = reporting.report_executions(conn, rt.payloads, reports)
    except IntegrityError:
        # A concurrent request recorded the same execution id first: the retry sees it as existing.
        with rt.database.writer() as conn:
            records = reporting.report_executions(conn, rt.payloads, reports)
    return jsonify(executions=[{"execution_id": r.execution_id, "trace_id": r.trace_id, "created": r.created}
                               for r in records]), 201


@bp.get("/executions")
def list_executions() -> Response:
    """Executions newest first; filters workflow_id, status, trigger_source, since, until, finished_since,
    finished_until, payload.<path>."""
    args = request.args
    payload = {k.removeprefix("payload."): v for k, v in args.items() if k.startswith("payload.")}
    with runtime().database.reader() as conn:
        page = executions.search(
            conn, workflow_id=args.get("workflow_id"), status=args.get("status"),
            trigger_source=args.get("trigger_source"), since=parse_time(args, "since"),
            until=parse_time(args, "until"), finished_since=parse_time(args, "finished_since"),
            finished_until=parse_time(args, "finished_until"), payload=payload or None, cursor=args.get("cursor"),
            limit=parse_limit(args))
    return jsonify(page)


@bp.get("/executions/<execution_id>")
def get_execution(execution_id: str) -> Response:
    """The execution with its steps, payloads, audit events and log lines."""
    rt = runtime()
    key = parse_uuid(execution_id, "execution id")
    # The read is one statement, so one snapshot without a transaction: autocommit spares the BEGIN and
    # COMMIT round trips. Payloads stay the stored JSON text, which app.jsonio splices into the body
    # instead of parsing 20 payloads only to encode them again.
    with rt.database.autocommit("reader") as conn:
        record = inspection.get_execution(conn, rt.payloads, key, raw_payloads=True)
    return jsonify(record)


@bp.delete("/executions/<execution_id>")
@auth.require_role("admin")
def force_delete(execution_id: str) -> Response:
    """Force-delete (admin with executions.force-delete): rows and objects go, audit events stay."""
    rt = runtime()
    key = parse_uuid(execution_id, "execution id")
    body = request.get_json(silent=True) or {}
    principal = auth.current_principal()
    with rt.database.writer() as conn:
        # Even in open mode: destroying ledger rows needs a named admin holding the permission.
        deletion.check_permission(conn, username=principal.name if principal and principal.user_id else "")
    with rt.database.maintainer() as conn:
        done = deletion.force_delete(conn, rt.payloads.store, execution_id=key, actor=principal.name,
                                     reason=str(body.get("reason") or ""))
        auth.audit(conn, "execution.force_delete", target=str(key),
                   detail={"reason": body.get("reason"), "rows": done.rows, "objects": done.objects})
    return jsonify(execution_id=key, deleted=True, rows=done.rows, objects=done.objects)


def init_app(server: Flask, rt: Runtime) -> None:
    """Register the execution endpoints."""
    server.register_blueprint(bp)
