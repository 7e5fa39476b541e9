"""CSRF defence for cookie sessions: a per-session token sent back by Dash (from a cookie) or a form field,
and a same-origin check on every state change. Bearer tokens and open mode need no token."""
from __future__ import annotations

import secrets
from urllib.parse import urlsplit

from flask import Response, request, session

from app.problems import problem
from services import tokens

COOKIE = "_csrf_token"  # the name Dash's renderer reads and echoes as the X-CSRFToken header


def token() -> str:
    """This session's CSRF token (created on first use); forms embed it, Dash echoes it from a cookie."""
    if "csrf" not in session:
        session["csrf"] = secrets.token_urlsafe(32)
    return session["csrf"]


def check() -> Response | None:
    """Refuse (403) a state change from another site, or without this session's token (header or form)."""
    refused = same_origin()
    if refused is not None:
        return refused
    sent = request.headers.get("X-CSRFToken") or request.headers.get("X-CSRF-Token") or request.form.get(
        "csrf_token", "")
    expected = session.get("csrf")
    if not expected or not sent or not tokens.same(sent, expected):
        return forbidden("missing or wrong CSRF token")
    return None


def same_origin() -> Response | None:
    """Browsers say where a request comes from; a cross-site state change is refused outright."""
    if request.headers.get("Sec-Fetch-Site") == "cross-site":
        return forbidden("cross-site request refused")
    origin = request.headers.get("Origin")
    if origin and origin != "null" and urlsplit(origin).netloc != request.host:
        return forbidden("cross-origin request refused")
    return None


def forbidden(detail: str) -> Response:
    if request.path.startswith("/api/"):
        return problem(403, "Forbidden", detail, slug="csrf")
    return Response(f"Forbidden: {detail}\n", status=403, mimetype="text/plain")
