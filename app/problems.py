"""RFC 9457 problem responses and the mapping from domain errors to HTTP statuses."""
from __future__ import annotations

import logging
from typing import Any

import sqlalchemy as sa
from flask import Flask, Response, json, request
from werkzeug.exceptions import HTTPException

from services import errors

log = logging.getLogger(__name__)

PROBLEM_TYPE = "https://flowledger.dev/problems/"
STATUS_BY_ERROR: dict[type[errors.FlowledgerError], int] = {
    errors.NotFound: 404,
    errors.Conflict: 409,
    errors.InvalidInput: 422,
    errors.DatabaseUnavailable: 503,
    errors.ObjectStoreError: 502,
    errors.ConfigurationError: 500,
    errors.Unauthorized: 401,
    errors.Forbidden: 403,
    errors.RateLimited: 429,
}


def problem(status: int, title: str, detail: str | None = None, *, slug: str | None = None,
            headers: dict[str, str] | None = None, **extra: Any) -> Response:
    """A response with an application/problem+json body."""
    body: dict[str, Any] = {
        "type": PROBLEM_TYPE + (slug or title.lower().replace(" ", "-")),
        "title": title,
        "status": status,
    }
    if detail:
        body["detail"] = detail
    if request:
        body["instance"] = request.path
    body.update({k: v for k, v in extra.items() if v is not None})
    response = Response(json.dumps(body), status=status, mimetype="application/problem+json")
    for key, value in (headers or {}).items():
        response.headers[key] = value
    return response


def _status_for(exc: errors.FlowledgerError) -> int:
    for cls in type(exc).__mro__:
        if cls in STATUS_BY_ERROR:
            return STATUS_BY_ERROR[cls]
    return 400


def init_app(server: Flask) -> None:
    """Answer domain errors and HTTP errors under /api and the probes as problem bodies."""

    @server.errorhandler(errors.FlowledgerError)
    def _domain_error(exc: errors.FlowledgerError) -> Response:
        status = _status_for(exc)
        problems = getattr(exc, "problems", None)
        title = type(exc).__name__.replace("Error", "") or "Error"
        words = "".join(" " + c.lower() if c.isupper() else c for c in title).strip().capitalize()
        return problem(status, words, str(exc), errors=problems if problems and len(problems) > 1
                       else None)

    @server.route("/api/<path:_rest>", methods=["GET", "POST", "PUT", "PATCH", "DELETE"])
    def _unknown_api_path(_rest: str) -> Response:
        # Without this, Dash's catch-all page route would answer unknown API paths with HTML.
        return problem(404, "Not found", f"No API endpoint at {request.path}", slug="not-found")

    @server.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> Response:
        if request.path.startswith(("/api/", "/healthz", "/readyz")):
            return problem(exc.code or 500, exc.name, exc.description)
        return exc.get_response()

    @server.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Response:
        if isinstance(exc, HTTPException):
            return _http_error(exc)
        if isinstance(exc, sa.exc.DBAPIError) and exc.connection_invalidated:
            # The writer pool does not ping before each use (a round trip per request); after a database
            # restart the first statement on a stale connection fails here and the pool is discarded, so
            # the client's retry gets a fresh connection.
            log.warning("database connection lost on %s %s: %s", request.method, request.path, exc.orig)
            return problem(503, "Database unavailable",
                           "The connection to the database was lost before the request completed. Send it "
                           "again (with an Idempotency-Key a repeat is stored once).", slug="database-unavailable",
                           headers={"Retry-After": "1"})
        log.exception("unhandled error on %s %s", request.method, request.path)
        return problem(500, "Internal error", "The server failed; the error is in its log.")
