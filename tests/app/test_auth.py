"""Authentication at the edge: ingestion tokens and signatures, rate limits, roles, CSRF, sessions, secrets."""
from __future__ import annotations

import json
import logging
import re
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from flask import Flask

from app.factory import create_app
from app.runtime import Runtime
from app.settings import Settings
from services import auth as auth_service
from services import db, tokens, users
from services.db import Database
from tests.fixtures.postgres import ROLES, create_database

NOW = datetime.now(UTC)
PASSWORD = "correct horse battery"


def _app(database: Database, tmp_path, **overrides) -> Flask:
    settings = Settings(_env_file=None, data_dir=tmp_path, scheduler_enabled=False,
                        secret_key="test-session-key-0123456789", **overrides)
    previous = db._current
    app = create_app(runtime=Runtime(settings=settings, database=database), start_scheduler=False)
    app.config["TESTING"] = True
    # create_app makes its database the process-wide one; give the shared session one back.
    if previous is not None:
        db.configure(previous)
    return app


@pytest.fixture(scope="module")
def secure_db(pg_server_url) -> Iterator[Database]:
    """A database of this module's own, so creating users never closes the shared test database."""
    database = Database(admin_url=create_database(pg_server_url, "flauth"), roles=ROLES)
    database.migrate()
    with database.writer() as conn:
        for name, role in (("vera", "viewer"), ("otto", "operator"), ("ada", "admin")):
            users.create_user(conn, username=name, password=PASSWORD, role=role)
    yield database
    database.dispose()


@pytest.fixture(scope="module")
def secure_app(secure_db, tmp_path_factory) -> Flask:
    return _app(secure_db, tmp_path_factory.mktemp("auth"))


def _issue(database: Database, source: str, *, signed: bool = False) -> tokens.IssuedToken:
    with database.writer() as conn:
        return tokens.create_ingest_token(conn, source_system=source, created_by="test", now=NOW, signed=signed)


def _stored(database: Database, source: str) -> int:
    with database.admin() as conn:
        return conn.execute(sa.text("SELECT count(*) FROM events WHERE source_system = :s"), {"s": source}).scalar()


def _login(client, username: str, password: str = PASSWORD):
    page = client.get("/login")
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.get_data(as_text=True)).group(1)
    return client.post("/login", data={"username": username, "password": password, "csrf_token": csrf, "next": "/"})


def _csrf(client) -> str:
    with client.session_transaction() as sess:
        return sess["csrf"]


def _source() -> str:
    return f"src-{uuid.uuid4().hex[:8]}"


def test_with_no_users_and_no_tokens_the_product_runs_open(fresh_database, tmp_path):
    fresh_database.migrate()
    client = _app(fresh_database, tmp_path).test_client()
    assert client.post("/api/v1/events/crm", json={"type": "x"}).status_code == 202
    assert client.get("/api/v1/events").status_code == 200
    assert client.get("/api/v1/me").get_json()["via"] == "open"


def test_ingestion_without_a_valid_token_for_the_source_is_401_and_stores_nothing(secure_app, secure_db):
    source, other = _source(), _source()
    good, foreign = _issue(secure_db, source), _issue(secure_db, other)
    revoked = _issue(secure_db, source)
    with secure_db.writer() as conn:
        tokens.revoke_token(conn, token_id=str(revoked.token.token_id), now=NOW)
    client = secure_app.test_client()
    url = f"/api/v1/events/{source}"
    for headers in ({}, {"Authorization": f"Bearer {revoked.secret}"}, {"Authorization": f"Bearer {foreign.secret}"},
                    {"Authorization": "Bearer flx_not-a-token"}):
        response = client.post(url, json={"n": 1}, headers=headers)
        assert response.status_code == 401, headers
        assert response.mimetype == "application/problem+json"
    assert _stored(secure_db, source) == 0
    assert client.post(url, json={"n": 1}, headers={"Authorization": f"Bearer {good.secret}"}).status_code == 202
    assert client.post(url, json={"n": 2}, headers={"X-Flowledger-Token": good.secret}).status_code == 202
    assert _stored(secure_db, source) == 2
    with secure_db.writer() as conn:
        listed = {t.token_id: t for t in tokens.list_tokens(conn, source_system=source)}
    assert listed[good.token.token_id].last_used_at is not None


def test_a_verified_token_is_cached_only_for_its_source_and_a_revocation_here_ends_it_at_once(secure_app, secure_db):
    source, other = _source(), _source()
    issued = _issue(secure_db, source)
    client = secure_app.test_client()
    headers = {"Authorization": f"Bearer {issued.secret}"}
    assert client.post(f"/api/v1/events/{source}", json={"n": 1}, headers=headers).status_code == 202
    assert client.post(f"/api/v1/events/{source}", json={"n": 2}, headers=headers).status_code == 202  # cached
    assert client.post(f"/api/v1/events/{other}", json={"n": 3}, headers=headers).status_code == 401
    with secure_db.writer() as conn:
        tokens.revoke_token(conn, token_id=str(issued.token.token_id), now=NOW)
    assert client.post(f"/api/v1/events/{source}", json={"n": 4}, headers=headers).status_code == 401
    assert _stored(secure_db, source) == 2 and _stored(secure_db, other) == 0


def test_standard_webhook_signatures_are_checked_with_a_tolerance_window(secure_app, secure_db):
    source = _source()
    issued = _issue(secure_db, source, signed=True)
    client = secure_app.test_client()
    body = b'{"order": 42}'

    def post(timestamp: int, signature: str | None = None, msg_id: str = "msg_1"):
        ts = str(timestamp)
        sig = signature or auth_service.standard_webhook_signature(issued.signing_secret, msg_id, ts, body)
        return client.post(f"/api/v1/events/{source}", data=body, content_type="application/json",
                           headers={"webhook-id": msg_id, "webhook-timestamp": ts, "webhook-signature": sig})

    now = int(time.time())
    assert post(now, "v1,AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=").status_code == 401
    assert post(now - 3600).status_code == 401  # a replayed capture from an hour ago
    assert post(now + 3600).status_code == 401
    assert _stored(secure_db, source) == 0
    # A bearer token alone is not enough for a source whose token requires signatures.
    assert client.post(f"/api/v1/events/{source}", data=body,
                       headers={"Authorization": f"Bearer {issued.secret}"}).status_code == 401
    assert post(now, msg_id="msg_ok").status_code == 202
    assert _stored(secure_db, source) == 1


def test_hub_style_sha256_signatures_are_checked(secure_app, secure_db):
    source = _source()
    issued = _issue(secure_db, source, signed=True)
    client = secure_app.test_client()
    body = b'{"action": "opened"}'
    wrong = auth_service.hub_signature(issued.signing_secret, body + b" ")
    assert client.post(f"/api/v1/events/{source}", data=body,
                       headers={"X-Hub-Signature-256": wrong}).status_code == 401
    assert _stored(secure_db, source) == 0
    right = auth_service.hub_signature(issued.signing_secret, body)
    assert client.post(f"/api/v1/events/{source}", data=body,
                       headers={"X-Hub-Signature-256": right}).status_code == 202
    assert _stored(secure_db, source) == 1


def test_a_source_over_its_rate_limit_gets_429_with_retry_after(secure_db, tmp_path):
    app = _app(secure_db, tmp_path, ingest_rate_limit=0.01, ingest_rate_burst=3)
    source = _source()
    issued = _issue(secure_db, source)
    client = app.test_client()
    headers = {"Authorization": f"Bearer {issued.secret}"}
    statuses = [client.post(f"/api/v1/events/{source}", json={"i": i}, headers=headers).status_code
                for i in range(5)]
    assert statuses == [202, 202, 202, 429, 429]
    refused = client.post(f"/api/v1/events/{source}", json={"i": 9}, headers=headers)
    assert int(refused.headers["Retry-After"]) >= 1
    assert _stored(secure_db, source) == 3


def test_unauthenticated_callers_get_401_on_the_api_and_the_login_page_in_the_browser(secure_app):
    client = secure_app.test_client()
    assert client.get("/api/v1/events").status_code == 401
    page = client.get("/executions")
    assert page.status_code == 302 and page.headers["Location"].startswith("/login")
    assert client.get("/login").status_code == 200
    assert client.get("/healthz").status_code in (200, 503)


def test_each_role_sees_and_does_what_it_should(secure_app, secure_db):
    source = _source()
    issued = _issue(secure_db, source)
    event_id = secure_app.test_client().post(
        f"/api/v1/events/{source}", json={"card": "4111"}, headers={"Authorization": f"Bearer {issued.secret}"}
    ).get_json()["event_id"]
    results = {}
    for name in ("vera", "otto", "ada"):
        client = secure_app.test_client()
        assert _login(client, name).status_code == 303
        headers = {"X-CSRFToken": _csrf(client)}
        results[name] = {
            "list": client.get("/api/v1/events").status_code,
            "payload": client.get(f"/api/v1/events/{event_id}").get_json()["payload"],
            "raw": client.get(f"/api/v1/events/{event_id}/raw").status_code,
            "replay": client.post(f"/api/v1/events/{event_id}/replay", json={"reason": "test"},
                                  headers=headers).status_code,
            "users": client.get("/api/v1/admin/users").status_code,
            "audit": client.get("/api/v1/admin/audit").status_code,
            "token": client.post("/api/v1/admin/tokens", json={"source_system": "x"}, headers=headers).status_code,
        }
    assert results["vera"]["list"] == 200 and results["vera"]["payload"] is None and results["vera"]["raw"] == 403
    assert results["vera"]["replay"] == 403
    assert results["vera"]["users"] == results["vera"]["audit"] == results["vera"]["token"] == 403
    assert results["otto"]["payload"] == {"card": "4111"} and results["otto"]["raw"] == 200
    assert results["otto"]["replay"] not in (401, 403)
    assert results["otto"]["users"] == results["otto"]["token"] == 403
    assert results["ada"]["users"] == results["ada"]["audit"] == 200 and results["ada"]["token"] == 201


def test_admin_actions_are_written_to_the_admin_audit_log(secure_app):
    client = secure_app.test_client()
    _login(client, "ada")
    name = f"u{uuid.uuid4().hex[:8]}"
    created = client.post("/api/v1/admin/users", json={"username": name, "password": PASSWORD, "role": "viewer"},
                          headers={"X-CSRFToken": _csrf(client)})
    assert created.status_code == 201
    entries = client.get("/api/v1/admin/audit?action=user.create").get_json()["entries"]
    entry = next(e for e in entries if e["target"] == name)
    assert entry["actor"] == "ada" and entry["remote_addr"] == "127.0.0.1"
    assert PASSWORD not in json.dumps(entries)


def test_a_cross_site_or_tokenless_state_change_is_rejected(secure_app):
    client = secure_app.test_client()
    _login(client, "ada")
    body = {"username": f"u{uuid.uuid4().hex[:8]}", "password": PASSWORD, "role": "admin"}
    assert client.post("/api/v1/admin/users", json=body).status_code == 403
    assert client.post("/api/v1/admin/users", data=body, headers={"Origin": "https://evil.example"}).status_code == 403
    assert client.post("/api/v1/admin/users", json=body,
                       headers={"X-CSRFToken": _csrf(client), "Sec-Fetch-Site": "cross-site"}).status_code == 403
    dash = client.post("/_dash-update-component", json={"output": "x.children", "inputs": []})
    assert dash.status_code == 403
    with_token = client.post("/_dash-update-component", json={"output": "x.children", "inputs": []},
                             headers={"X-CSRFToken": client.get_cookie("_csrf_token").value})
    assert with_token.status_code != 403
    fresh = secure_app.test_client()
    forged_login = fresh.post("/login", data={"username": "ada", "password": PASSWORD})
    assert forged_login.status_code == 403


def test_a_disabled_users_session_and_tokens_stop_working(secure_app, secure_db):
    name = f"u{uuid.uuid4().hex[:8]}"
    with secure_db.writer() as conn:
        user = users.create_user(conn, username=name, password=PASSWORD, role="operator")
        bearer = tokens.create_user_token(conn, user_id=user.user_id, created_by="test", now=NOW).secret
    client = secure_app.test_client()
    assert _login(client, name).status_code == 303
    assert client.get("/api/v1/me").get_json()["name"] == name
    assert secure_app.test_client().get("/api/v1/events", headers={"Authorization": f"Bearer {bearer}"}).status_code \
        == 200
    with secure_db.writer() as conn:
        users.set_disabled(conn, username=name, disabled=True, now=NOW)
    assert client.get("/api/v1/me").get_json() == {"authenticated": False} or client.get(
        "/api/v1/events").status_code == 401
    assert client.get("/api/v1/events").status_code == 401
    assert secure_app.test_client().get("/api/v1/events", headers={"Authorization": f"Bearer {bearer}"}).status_code \
        == 401
    assert _login(secure_app.test_client(), name).status_code == 401


def test_repeated_failed_logins_are_throttled(secure_app, secure_db):
    name = f"u{uuid.uuid4().hex[:8]}"
    with secure_db.writer() as conn:
        users.create_user(conn, username=name, password=PASSWORD, role="viewer")
    client = secure_app.test_client()
    statuses = [_login(client, name, "wrong password!").status_code for _ in range(6)]
    assert statuses[:5] == [401] * 5 and statuses[5] == 429
    assert _login(client, name).status_code == 429  # even the right password waits out the window


def test_secrets_never_appear_in_logs_or_error_bodies(secure_app, secure_db, caplog):
    caplog.set_level(logging.DEBUG)
    source = _source()
    good = _issue(secure_db, source, signed=True)
    client = secure_app.test_client()
    bodies = []
    for headers in ({"Authorization": f"Bearer {good.secret}"}, {"X-Hub-Signature-256": "sha256=00"},
                    {"webhook-id": "m", "webhook-timestamp": "1", "webhook-signature": "v1,xx"}):
        bodies.append(client.post(f"/api/v1/events/{source}", json={"password": "hunter2-field"},
                                  headers=headers).get_data(as_text=True))
    bodies.append(_login(client, "ada", "wrong-pass-s3cret").get_data(as_text=True))
    text = caplog.text + "".join(bodies)
    for secret in (good.secret, good.signing_secret, good.signing_secret[6:], "wrong-pass-s3cret", PASSWORD,
                   "hunter2-field", "test-session-key-0123456789"):
        assert secret not in text
