"""Authentication and authorisation at the edge (ingestion tokens, users, roles, CSRF).

Use in other blueprints:
    @bp.post("/events/<event_id>/replay")
    @auth.require_role("operator")
    def replay(event_id): ...
and `auth.audit(conn, "replay", target=str(event_id), detail={...})` in the same transaction as the action.
"""
from __future__ import annotations

import functools
import ipaddress
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar
from urllib.parse import quote

from flask import Flask, Request, Response, current_app, g, redirect, request, session
from flask.sessions import SecureCookieSessionInterface
from itsdangerous import URLSafeTimedSerializer
from sqlalchemy import Connection
from sqlalchemy.exc import SQLAlchemyError

from app import csrf
from app.problems import problem
from app.runtime import Runtime
from services import admin_audit, authstate, tokens, users
from services import auth as auth_service
from services.errors import ConfigurationError, Forbidden, RateLimited, Unauthorized

log = logging.getLogger(__name__)
F = TypeVar("F", bound=Callable[..., Any])
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
PUBLIC_PATHS = ("/login", "/healthz", "/readyz", "/_favicon.ico", "/favicon.ico")
PUBLIC_PREFIXES = ("/assets/", "/_dash-component-suites/")
INGEST_PATH = re.compile(r"^/api/v1/events/[^/]+$")
RAW_PATH = re.compile(r"^/api/v1/events/[^/]+/raw$")
EVENT_PATH = re.compile(r"^/api/v1/events/[^/]+$")


@dataclass(frozen=True)
class Principal:
    """Who is making this request and how they proved it."""

    name: str
    role: str
    via: str  # "open", "session", "bearer" or "ingest"
    user_id: str | None = None


OPEN = Principal(name="local (open mode)", role="admin", via="open")


def now() -> datetime:
    """The edge's clock (tests move time through the services' now= arguments instead)."""
    return datetime.now(UTC)


def _rt() -> Runtime:
    return current_app.extensions["flowledger"]


OPEN_CHECK_SECONDS = 2.0
INGEST_TOKEN_CACHE_SECONDS = 5.0  # how long a revocation made by another process may go unseen


def is_open(rt: Runtime) -> bool:
    """No users and no tokens yet; once closed, cached for the life of the runtime (it never reopens itself).

    While open, the answer is reused for OPEN_CHECK_SECONDS (a query per webhook would halve ingestion);
    credentials created in this process close it at once, those created by another process within that time.
    """
    if rt.extras.get("auth_closed"):
        return False
    checked = rt.extras.get("auth_open_checked")
    if checked and time.monotonic() - checked[0] < OPEN_CHECK_SECONDS and checked[1] == authstate.generation():
        return True
    with rt.database.writer() as conn:
        open_now = auth_service.is_open(conn)
    if not open_now:
        rt.extras["auth_closed"] = True
    else:
        rt.extras["auth_open_checked"] = (time.monotonic(), authstate.generation())
    return open_now


def current_principal() -> Principal | None:
    """The authenticated caller of this request (OPEN in open mode), or None."""
    return g.get("principal")


def current_role() -> str | None:
    """The caller's role, for Dash callbacks that show or hide actions."""
    principal = current_principal()
    return principal.role if principal else None


def has_role(needed: str) -> bool:
    """True when the caller's role ranks at or above needed."""
    return users.role_at_least(current_role(), needed)


def require_role(needed: str) -> Callable[[F], F]:
    """Decorator for endpoints: 401 without credentials, 403 below the role (viewer < operator < admin)."""
    def wrap(view: F) -> F:
        @functools.wraps(view)
        def guarded(*args: Any, **kwargs: Any) -> Any:
            principal = current_principal()
            if principal is None:
                raise Unauthorized("log in or send a bearer token")
            if not users.role_at_least(principal.role, needed):
                raise Forbidden(f"this action needs the {needed} role; you are {principal.role}")
            return view(*args, **kwargs)
        return guarded  # type: ignore[return-value]
    return wrap


def remote_addr() -> str | None:
    """The caller's address as seen by this server."""
    return request.remote_addr


def audit(conn: Connection, action: str, *, target: str | None = None, detail: dict[str, Any] | None = None) -> int:
    """Append a privileged action by the current caller to the admin audit log (in conn's transaction)."""
    principal = current_principal()
    return admin_audit.record(conn, actor=principal.name if principal else "anonymous", action=action,
                              target=target, detail=detail, remote_addr=remote_addr())


def check_ingest(request: Request, source_system: str, body: bytes) -> str | None:
    """Authenticate an ingestion request for source_system; returns the token id used, if any."""
    rt = _rt()
    settings = rt.settings
    token_id = None
    at = now()
    if not is_open(rt):
        creds = auth_service.credentials_from(request.headers)
        # A plain bearer token verified moments ago needs no query; signatures cover the body, so never.
        cache = rt.extras.get("verified_tokens") or rt.extras.setdefault(
            "verified_tokens", tokens.VerifiedTokens(INGEST_TOKEN_CACHE_SECONDS))
        bearer = creds.bearer if not creds.signed else None
        cached = cache.get(secret=bearer, source_system=source_system) if bearer else None
        if cached is not None:
            token_id = str(cached)
        else:
            generation = authstate.generation()
            with rt.database.writer() as conn:
                verified = auth_service.authenticate_ingest(
                    conn, source_system=source_system, body=body, creds=creds, now=at,
                    tolerance_seconds=settings.webhook_tolerance_seconds)
            if bearer:
                cache.put(secret=bearer, source_system=source_system, token_id=verified, generation=generation)
            token_id = str(verified)
    if settings.ingest_rate_limit > 0:
        with rt.database.writer() as conn:
            auth_service.take(conn, bucket=f"ingest:{source_system}", rate=settings.ingest_rate_limit,
                              burst=settings.ingest_rate_burst or max(1, int(settings.ingest_rate_limit * 2)), now=at)
    return token_id


def check_serve_binding(rt: Runtime, echo: Callable[[str], None]) -> None:
    """Refuse a non-loopback bind while no user exists; otherwise say how to create the first admin."""
    if not is_open(rt):
        return
    host = rt.settings.host
    if not _loopback(host):
        raise ConfigurationError(
            f"FLOWLEDGER_HOST={host} refused: no users or tokens exist yet, so the server would be open to the "
            "network; bind 127.0.0.1 or first run: flowledger user create admin --role admin")
    echo("flowledger: open mode (no users yet), listening on loopback only; create the first admin with: "
         "flowledger user create admin --role admin")


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def init_app(server: Flask, runtime: Runtime) -> None:
    """Bind login sessions, the request guard, CSRF and the 429 answer."""
    settings = runtime.settings
    server.session_interface = _SessionInterface()
    if settings.secret_key:
        server.secret_key = settings.secret_key.get_secret_value()
    server.config.update(
        SESSION_COOKIE_NAME="flowledger_session", SESSION_COOKIE_HTTPONLY=True, SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=settings.public_url.startswith("https://"),
        PERMANENT_SESSION_LIFETIME=timedelta(hours=settings.session_hours))
    server.before_request(_guard)
    server.after_request(_after)

    @server.errorhandler(RateLimited)
    def _rate_limited(exc: RateLimited) -> Response:
        return problem(429, "Too many requests", str(exc), slug="rate-limited",
                       headers={"Retry-After": str(exc.retry_after)}, retry_after=exc.retry_after)


class _SessionInterface(SecureCookieSessionInterface):
    """Signed cookie sessions whose key, unless configured, is generated once and kept in the database.

    The key is fetched on first use, not at start-up, so the app builds (and answers its probes)
    while the database is still down.
    """

    def open_session(self, app: Flask, request: Request) -> Any:
        # Probes and static files never need a session (nor the database round trip its key may cost).
        if request.path in ("/healthz", "/readyz") or request.path.startswith(PUBLIC_PREFIXES):
            return None
        # Ingestion authenticates by token or signature only, and each webhook would pay for the cookie.
        if request.method == "POST" and INGEST_PATH.match(request.path):
            return None
        return super().open_session(app, request)

    def get_signing_serializer(self, app: Flask) -> URLSafeTimedSerializer | None:
        if not app.secret_key:
            rt: Runtime = app.extensions["flowledger"]
            try:
                with rt.database.writer() as conn:
                    app.secret_key = auth_service.session_key(conn, None)
            except SQLAlchemyError:
                log.warning("session key unavailable (database down or not migrated); no session this request")
                return None
        return super().get_signing_serializer(app)


def _guard() -> Response | None:
    path = request.path
    if path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES) or path == "/logout":
        return None
    rt = _rt()
    if is_open(rt):
        g.principal = OPEN
        return csrf.same_origin() if request.method not in SAFE_METHODS else None
    if request.method == "POST" and INGEST_PATH.match(path):
        return None  # check_ingest authenticates ingestion with the source's token or signature
    principal = _from_bearer(rt) or _from_session(rt)
    if principal is None:
        if path.startswith("/api/"):
            return problem(401, "Unauthorized", "log in or send 'Authorization: Bearer <token>'",
                           slug="unauthorized", headers={"WWW-Authenticate": 'Bearer realm="flowledger"'})
        return redirect("/login?next=" + quote(request.full_path.rstrip("?"), safe="/?=&"))
    g.principal = principal
    if principal.via == "ingest" and not (request.method == "POST" and path == "/api/v1/executions"):
        return problem(403, "Forbidden", "ingestion tokens may only post events and execution reports",
                       slug="forbidden")
    if request.method not in SAFE_METHODS and principal.via == "session":
        refused = csrf.check()
        if refused is not None:
            return refused
    if request.method not in SAFE_METHODS and path.startswith("/api/") and not users.role_at_least(
            principal.role, "operator") and principal.via != "ingest":
        return problem(403, "Forbidden", "viewers may only read", slug="forbidden")
    if RAW_PATH.match(path) and not users.role_at_least(principal.role, "operator"):
        return problem(403, "Forbidden", "raw event bodies are visible to operators and admins only",
                       slug="forbidden")
    return None


def _from_bearer(rt: Runtime) -> Principal | None:
    header = request.headers.get("Authorization", "")
    if header[:7].lower() != "bearer ":
        return None
    with rt.database.writer() as conn:
        token = tokens.lookup(conn, secret=header[7:].strip(), now=now())
        if token is None:
            return None
        if token.kind == "ingest":
            return Principal(name=f"token:{token.prefix}", role="viewer", via="ingest")
        user = users.get_user(conn, token.user_id)
    if user is None or user.disabled:
        return None
    return Principal(name=user.username, role=user.role, via="bearer", user_id=str(user.user_id))


def _from_session(rt: Runtime) -> Principal | None:
    uid, epoch = session.get("uid"), session.get("epoch")
    if not uid:
        return None
    with rt.database.writer() as conn:
        user = users.get_user(conn, uid)
    if user is None or user.disabled or user.session_epoch != epoch:
        session.pop("uid", None)  # a disabled user's or a changed password's sessions end here
        return None
    return Principal(name=user.username, role=user.role, via="session", user_id=str(user.user_id))


def _after(response: Response) -> Response:
    principal = current_principal()
    if principal and principal.via == "session" and request.cookies.get(csrf.COOKIE) != session.get("csrf"):
        response.set_cookie(csrf.COOKIE, csrf.token(), samesite="Strict", httponly=False,
                            secure=current_app.config["SESSION_COOKIE_SECURE"])
    if (principal and principal.via != "open" and request.method == "GET" and EVENT_PATH.match(request.path)
            and response.is_json and not users.role_at_least(principal.role, "operator")):
        # The parsed payload and headers are the raw body in another form: viewers see metadata only.
        body = response.get_json()
        if isinstance(body, dict):
            body.update(payload=None, headers=None, redacted="payload and headers need the operator role")
            response.set_data(current_app.json.dumps(body))
    return response
