"""Liveness and readiness probes."""
from __future__ import annotations

from flask import Blueprint, Flask, Response, jsonify

from app.problems import problem
from services import db
from services.errors import DatabaseUnavailable

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz() -> Response:
    """200 while the process lives."""
    return jsonify(status="ok")


@bp.get("/readyz")
def readyz() -> Response:
    """200 only when the database answers and is migrated; 503 with a problem body otherwise."""
    try:
        db.current().ping()
    except DatabaseUnavailable as exc:
        return problem(503, "Not ready", str(exc), slug="not-ready")
    return jsonify(status="ready")


def init_app(server: Flask) -> None:
    """Register the probes."""
    server.register_blueprint(bp)
