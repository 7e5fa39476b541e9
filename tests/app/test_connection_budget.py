"""serve checks that PostgreSQL accepts the connections its workers may keep open, and raises an embedded server."""
import os
import shutil
from pathlib import Path

import sqlalchemy as sa

from app import connection_budget
from app.runtime import Runtime, database_for
from app.settings import Settings
from services.db import EmbeddedServer


def test_the_default_sizing_fits_a_fresh_embedded_server():
    # 100 connections less 3 for superusers: the defaults must never need a restart
    assert connection_budget.needed(Settings(_env_file=None)) <= 97


def test_an_external_server_too_small_for_the_workers_gets_a_warning_and_is_left_alone(database, tmp_path):
    settings = Settings(_env_file=None, data_dir=tmp_path, workers=64, threads=16)
    runtime = Runtime(settings=settings, database=database)
    said: list[str] = []
    before = connection_budget.measure(runtime)

    budget = connection_budget.ensure(runtime, said.append)

    assert not budget.fits and budget.needed == connection_budget.needed(settings) > budget.allowed
    assert len(said) == 1 and "warning" in said[0]
    assert f"up to {budget.needed} connections" in said[0] and f"accepts {budget.allowed}" in said[0]
    assert "FLOWLEDGER_WORKERS=64" in said[0]
    assert connection_budget.measure(runtime).max_connections == before.max_connections


def test_an_embedded_server_is_raised_to_fit_the_workers_once(tmp_path):
    base = Path(f"/tmp/fl-budget-{os.getpid()}")  # short: the server's socket lives in pgdata
    server = EmbeddedServer(base / "pgdata")
    settings = Settings(_env_file=None, data_dir=tmp_path, workers=4, threads=8)
    runtime = Runtime(settings=settings, database=database_for(settings, server.start()), embedded=server)
    try:
        with runtime.database.admin() as conn:
            conn.execute(sa.text("CREATE TABLE kept (n int)"))
            conn.execute(sa.text("INSERT INTO kept VALUES (42)"))
        assert not connection_budget.measure(runtime).fits
        said: list[str] = []

        budget = connection_budget.ensure(runtime, said.append)

        assert budget.fits and budget.allowed >= connection_budget.needed(settings)
        assert said == [f"flowledger: embedded PostgreSQL now accepts {budget.max_connections} connections "
                        "(was 100) for FLOWLEDGER_WORKERS=4 x FLOWLEDGER_THREADS=8"]
        with runtime.database.admin() as conn:  # the restarted server has what was stored before
            assert conn.execute(sa.text("SELECT n FROM kept")).scalar_one() == 42
        again: list[str] = []
        assert connection_budget.ensure(runtime, again.append).fits and again == []
        # a sizing no embedded server should be stretched to is left to the operator
        runtime.settings = Settings(_env_file=None, data_dir=tmp_path, workers=64, threads=64)
        huge: list[str] = []
        assert not connection_budget.ensure(runtime, huge.append).fits
        assert "Lower FLOWLEDGER_WORKERS" in huge[0]
        assert connection_budget.measure(runtime).max_connections == budget.max_connections
    finally:
        runtime.close()
        shutil.rmtree(base, ignore_errors=True)
