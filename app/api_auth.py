"""Login and logout pages, the caller's identity, inclusion proofs, and admin endpoints for users, tokens, audit."""
from __future__ import annotations

from html import escape
from typing import Any
from urllib.parse import urlsplit

from flask import Blueprint, Flask, Response, jsonify, redirect, request, session

from app import auth, csrf
from app.api_common import parse_limit, parse_time, parse_uuid, runtime
from app.runtime import Runtime
from services import admin_audit, seal_verify, tokens, users
from services.errors import InvalidInput, RateLimited

bp = Blueprint("auth", __name__)

LOGIN_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Sign in · Flowledger</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="stylesheet" href="/assets/flowledger.css"></head>
<body><main class="fl-content" style="max-width:360px;margin:10vh auto">
<section class="fl-panel" style="padding:24px">
<h1 class="fl-brand" style="margin-top:0">Flowledger</h1>
{message}
<form method="post" action="/login">
<input type="hidden" name="csrf_token" value="{csrf}"><input type="hidden" name="next" value="{next}">
<p><label>Username<br><input name="username" autocomplete="username" required autofocus style="width:100%"></label></p>
<p><label>Password<br><input name="password" type="password" autocomplete="current-password" required
 style="width:100%"></label></p>
<p><button type="submit">Sign in</button></p>
</form></section></main></body></html>
"""


def _page(message: str = "", status: int = 200, next_url: str = "/") -> Response:
    note = f'<p class="fl-error" role="alert">{escape(message)}</p>' if message else ""
    html = LOGIN_PAGE.format(message=note, csrf=escape(csrf.token()), next=escape(next_url))
    return Response(html, status=status, mimetype="text/html")


def _safe_next(value: str | None) -> str:
    """Only same-site paths: an open redirect after login would hand the session to a phishing page."""
    if not value or not value.startswith("/") or value.startswith("//") or urlsplit(value).netloc:
        return "/"
    return value


@bp.get("/login")
def login_form() -> Response:
    """The sign-in form."""
    return _page(next_url=_safe_next(request.args.get("next")))


@bp.post("/login")
def login() -> Response:
    """Check the password (throttled), start a fresh session, go on to next."""
    refused = csrf.check()
    if refused is not None:
        return refused
    rt = runtime()
    next_url = _safe_next(request.form.get("next"))
    try:
        with rt.database.writer() as conn:
            user = users.authenticate(conn, username=request.form.get("username", ""),
                                      password=request.form.get("password", ""), remote_addr=auth.remote_addr(),
                                      now=auth.now(), max_failures=rt.settings.login_max_failures)
    except RateLimited as exc:
        response = _page("Too many failed sign-ins. Try again later.", 429, next_url)
        response.headers["Retry-After"] = str(exc.retry_after)
        return response
    if user is None:
        return _page("Wrong username or password, or the account is disabled.", 401, next_url)
    session.clear()  # a new session id-equivalent: no fixation of a pre-login session
    session.permanent = True
    session.update(uid=str(user.user_id), epoch=user.session_epoch)
    csrf.token()
    return redirect(next_url, code=303)


@bp.route("/logout", methods=["GET", "POST"])
def logout() -> Response:
    """End the session."""
    session.clear()
    return redirect("/login", code=303)


@bp.get("/api/v1/me")
def me() -> Response:
    """Who the caller is and what role they have."""
    principal = auth.current_principal()
    if principal is None:
        return jsonify(authenticated=False)
    return jsonify(authenticated=True, name=principal.name, role=principal.role, via=principal.via)


@bp.get("/api/v1/executions/<execution_id>/proof")
def proof(execution_id: str) -> Response:
    """Merkle inclusion proofs of an execution's rows against the seals of their periods."""
    with runtime().database.reader() as conn:
        return jsonify(seal_verify.inclusion_proof(conn, parse_uuid(execution_id, "execution id")))


@bp.get("/api/v1/admin/users")
@auth.require_role("admin")
def list_users() -> Response:
    """Every user (no password hashes)."""
    with runtime().database.writer() as conn:
        return jsonify(users=[u.public() for u in users.list_users(conn)])


@bp.post("/api/v1/admin/users")
@auth.require_role("admin")
def create_user() -> tuple[Response, int]:
    """Create a user with a role."""
    body = _json()
    with runtime().database.writer() as conn:
        user = users.create_user(conn, username=str(body.get("username", "")), password=str(body.get("password", "")),
                                 role=str(body.get("role", "viewer")))
        auth.audit(conn, "user.create", target=user.username, detail={"role": user.role})
    return jsonify(user.public()), 201


@bp.patch("/api/v1/admin/users/<username>")
@auth.require_role("admin")
def change_user(username: str) -> Response:
    """Change a user's role and/or disable or re-enable them."""
    body = _json()
    at = auth.now()
    with runtime().database.writer() as conn:
        user = users.find_user(conn, username)
        if "role" in body:
            user = users.set_role(conn, username=username, role=str(body["role"]), now=at)
            auth.audit(conn, "user.set_role", target=username, detail={"role": user.role})
        if "disabled" in body:
            user = users.set_disabled(conn, username=username, disabled=bool(body["disabled"]), now=at)
            auth.audit(conn, "user.disable" if user.disabled else "user.enable", target=username)
    return jsonify(user.public())


@bp.get("/api/v1/admin/tokens")
@auth.require_role("admin")
def list_tokens() -> Response:
    """Every token with its last use (never the secret)."""
    with runtime().database.writer() as conn:
        return jsonify(tokens=[t.public() for t in tokens.list_tokens(conn, source_system=request.args.get("source"))])


@bp.post("/api/v1/admin/tokens")
@auth.require_role("admin")
def create_token() -> tuple[Response, int]:
    """Create an ingestion token for a source (the secret is in this answer only)."""
    body = _json()
    source = str(body.get("source_system", ""))
    with runtime().database.writer() as conn:
        issued = tokens.create_ingest_token(conn, source_system=source, created_by=auth.current_principal().name,
                                            now=auth.now(), name=body.get("name"), signed=bool(body.get("signed")))
        auth.audit(conn, "token.create", target=str(issued.token.token_id), detail={"source_system": source})
    return jsonify(token=issued.token.public(), secret=issued.secret, signing_secret=issued.signing_secret), 201


@bp.post("/api/v1/me/tokens")
def create_my_token() -> tuple[Response, int]:
    """A bearer token for scripts acting as the logged-in user."""
    principal = auth.current_principal()
    if principal is None or principal.user_id is None:
        raise InvalidInput("only a logged-in user can create a personal token")
    with runtime().database.writer() as conn:
        issued = tokens.create_user_token(conn, user_id=parse_uuid(principal.user_id, "user id"),
                                          created_by=principal.name, now=auth.now(), name=_json().get("name"))
        auth.audit(conn, "token.create", target=str(issued.token.token_id), detail={"kind": "user"})
    return jsonify(token=issued.token.public(), secret=issued.secret), 201


@bp.delete("/api/v1/admin/tokens/<token_id>")
@auth.require_role("admin")
def revoke_token(token_id: str) -> Response:
    """Revoke a token; its next request is refused."""
    with runtime().database.writer() as conn:
        token = tokens.revoke_token(conn, token_id=token_id, now=auth.now())
        auth.audit(conn, "token.revoke", target=str(token.token_id))
    return jsonify(token.public())


@bp.get("/api/v1/admin/audit")
@auth.require_role("admin")
def audit_log() -> Response:
    """The admin audit log, newest first."""
    args = request.args
    before = args.get("before")
    if before is not None and not before.isdigit():
        raise InvalidInput("before must be an entry id")
    with runtime().database.reader() as conn:
        entries = admin_audit.list_entries(conn, actor=args.get("actor"), action=args.get("action"),
                                           since=parse_time(args, "since"), until=parse_time(args, "until"),
                                           before_id=int(before) if before else None, limit=parse_limit(args))
    return jsonify(entries=entries)


def _json() -> dict[str, Any]:
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise InvalidInput("the body must be a JSON object")
    return body


def init_app(server: Flask, rt: Runtime) -> None:
    """Register the login pages and the auth/admin endpoints."""
    server.register_blueprint(bp)

