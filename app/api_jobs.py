"""Operator-only job endpoints: GDPR erasure requests."""
from __future__ import annotations

import json

from flask import Blueprint, Flask, Response, jsonify, request

from app import auth
from app.api_common import BodyTooLarge, read_body, runtime
from app.problems import problem
from app.runtime import Runtime
from services import erasure
from services.errors import InvalidInput

bp = Blueprint("jobs", __name__, url_prefix="/api/v1")


@bp.post("/erasures")
@auth.require_role("operator")
def create_erasure() -> Response:
    """Erase a data subject: {"subject_field": "customer.email", "value": "...", "dry_run": false}."""
    rt = runtime()
    try:
        body = json.loads(read_body(request, 64 * 1024) or b"{}")
    except BodyTooLarge as exc:
        return problem(413, "Payload too large", str(exc), slug="payload-too-large")
    except ValueError:
        raise InvalidInput("body must be JSON") from None
    field, value = body.get("subject_field"), body.get("value")
    problems = [p for p, ok in (("subject_field is required", isinstance(field, str) and field),
                                ("value is required", isinstance(value, str) and value)) if not ok]
    if problems:
        raise InvalidInput("erasure request is incomplete", problems)
    principal = auth.current_principal()
    plan = erasure.erase(rt.database, rt.payloads, subject_field=field, value=value,
                         requested_by=principal.name if principal else "operator", dry_run=bool(body.get("dry_run")))
    with rt.database.writer() as conn:
        auth.audit(conn, "erasure.dry_run" if plan.dry_run else "erasure", target=field,
                   detail={"executions": len(plan.execution_ids), "events": len(plan.event_ids),
                           "erasure_id": str(plan.erasure_id) if plan.erasure_id else None})
    return jsonify(plan.as_dict()), 200 if plan.dry_run else 201


def init_app(server: Flask, rt: Runtime) -> None:
    """Register the job endpoints."""
    server.register_blueprint(bp)
