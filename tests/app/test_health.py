"""Probes: /healthz while the process lives, /readyz only when the database is ready."""
import uuid

from app.factory import create_app
from app.runtime import Runtime, database_for
from app.settings import Settings
from services import db


def test_healthz_answers_200(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok"}


def test_readyz_answers_200_when_the_database_is_migrated(client):
    response = client.get("/readyz")
    assert response.status_code == 200


def test_readyz_answers_503_with_a_problem_body_when_the_database_is_unreachable(app, tmp_path):
    settings = Settings(_env_file=None, data_dir=tmp_path, scheduler_enabled=False,
                        database_url="postgresql://nobody@127.0.0.1:9/none")
    runtime = Runtime(settings=settings, database=database_for(
        settings, db.normalise_url(settings.database_url.get_secret_value())))
    broken = create_app(runtime=runtime, start_scheduler=False)
    try:
        response = broken.test_client().get("/readyz")
        assert response.status_code == 503
        assert response.mimetype == "application/problem+json"
        body = response.get_json()
        assert body["status"] == 503 and "unreachable" in body["detail"]
        assert broken.test_client().get("/healthz").status_code == 200
    finally:
        db.configure(app.extensions["flowledger"].database)


def test_readyz_answers_503_when_the_database_is_not_migrated(app, fresh_database, tmp_path):
    settings = Settings(_env_file=None, data_dir=tmp_path, scheduler_enabled=False)
    unmigrated = create_app(runtime=Runtime(settings=settings, database=fresh_database),
                            start_scheduler=False)
    try:
        response = unmigrated.test_client().get("/readyz")
        assert response.status_code == 503
        assert "not migrated" in response.get_json()["detail"]
    finally:
        db.configure(app.extensions["flowledger"].database)


def test_unknown_api_path_is_a_problem_body(client):
    response = client.get("/api/v1/nothing-here")
    assert response.status_code == 404
    assert response.mimetype == "application/problem+json"


def test_a_lost_writer_connection_answers_503_once_and_the_retry_is_stored(app, database, settings):
    from dataclasses import replace

    import sqlalchemy as sa

    # Its own engines, so terminating their connection leaves the session's pools alone.
    own = replace(database, pool_size=1, _engines={})
    stale = create_app(runtime=Runtime(settings=settings, database=own), start_scheduler=False)
    source = f"src-lost-{uuid.uuid4().hex[:8]}"
    try:
        client = stale.test_client()
        assert client.post(f"/api/v1/events/{source}", json={"n": 1}).status_code == 202
        with own.autocommit("writer") as conn:  # the pool ingestion takes its connection from
            pid = conn.execute(sa.text("SELECT pg_backend_pid()")).scalar_one()
        with database.admin() as conn:
            assert conn.execute(sa.text("SELECT pg_terminate_backend(:p)"), {"p": pid}).scalar_one()

        lost = client.post(f"/api/v1/events/{source}", json={"n": 2})
        assert lost.status_code == 503
        assert lost.mimetype == "application/problem+json" and lost.headers["Retry-After"] == "1"
        assert "send it again" in lost.get_json()["detail"].lower()
        assert client.post(f"/api/v1/events/{source}", json={"n": 2}).status_code == 202
        with database.admin() as conn:
            stored = conn.execute(sa.text("SELECT payload->>'n' FROM events WHERE source_system = :s ORDER BY "
                                          "received_at"), {"s": source}).scalars().all()
        assert stored == ["1", "2"]
    finally:
        own.dispose()
        db.configure(app.extensions["flowledger"].database)
