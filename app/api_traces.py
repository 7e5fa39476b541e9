"""Traces: GET /api/v1/executions/<id>/trace as OTLP JSON, and the OTLP export worker when configured."""
from __future__ import annotations

import atexit
import logging

from flask import Blueprint, Flask, Response, jsonify

from app.api_common import parse_uuid, runtime
from app.runtime import Runtime
from services import trace_export, tracing

log = logging.getLogger(__name__)
bp = Blueprint("traces", __name__, url_prefix="/api/v1")


@bp.get("/executions/<execution_id>/trace")
def get_trace(execution_id: str) -> Response:
    """The execution's trace rebuilt from the ledger alone (ExportTraceServiceRequest in OTLP/JSON)."""
    with runtime().database.reader() as conn:
        return jsonify(tracing.build_trace(conn, parse_uuid(execution_id, "execution id")))


def init_app(server: Flask, rt: Runtime) -> trace_export.ExportWorker | None:
    """Register the trace endpoint; with an OTLP endpoint set, queue exports and drain them in a thread."""
    server.register_blueprint(bp)
    settings = rt.settings
    if not settings.otlp_endpoint:
        return None
    tracing.configure_export(enabled=True, running_delay_s=settings.otlp_running_delay_seconds)
    exporter = trace_export.make_exporter(settings.otlp_endpoint, timeout_s=settings.otlp_timeout_seconds)
    worker = trace_export.ExportWorker(rt.database, exporter, interval_s=settings.otlp_drain_interval_seconds)
    worker.start()
    server.extensions["otlp_export_worker"] = worker
    atexit.register(worker.stop)
    log.info("OTLP export to %s enabled", trace_export.traces_url(settings.otlp_endpoint))
    return worker
