"""Shared fixtures: real PostgreSQL, settings, app and client."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

from app.runtime import Runtime
from app.settings import Settings
from services.db import Database

pytest_plugins = ["tests.fixtures.postgres", "tests.fixtures.s3"]


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("data")


@pytest.fixture(scope="session")
def settings(data_dir: Path) -> Settings:
    """Settings for in-process app tests (scheduler off; tests drive jobs directly)."""
    return Settings(_env_file=None, data_dir=data_dir, scheduler_enabled=False)


@pytest.fixture(scope="session")
def runtime(settings: Settings, database: Database) -> Runtime:
    return Runtime(settings=settings, database=database)


@pytest.fixture(scope="session")
def app(runtime: Runtime) -> Flask:
    from app.factory import create_app

    return create_app(runtime=runtime, start_scheduler=False)


@pytest.fixture
def client(app: Flask) -> Iterator[FlaskClient]:
    with app.test_client() as client:
        yield client
