"""Probes: /healthz while the process lives, /readyz only when the database is ready."""
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
