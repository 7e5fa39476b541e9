"""Serve from a clean directory on the embedded database, stop it, start it again: data stays."""
import os
import subprocess
import sys
import uuid

import psutil
import sqlalchemy as sa

from services.db import normalise_url
from tests.fixtures.serve import start_serve


def _embedded_url(data_dir) -> str:
    return str(normalise_url(f"postgresql://postgres:@/postgres?host={data_dir / 'pgdata'}"))


def _postgres_running_in(data_dir) -> bool:
    needle = str(data_dir / "pgdata")
    return any(p.info["cmdline"] and needle in " ".join(p.info["cmdline"])
               for p in psutil.process_iter(attrs=["name", "cmdline"]) if p.info["name"] == "postgres")


def test_serve_starts_embedded_answers_probes_and_keeps_data_across_restarts(tmp_path):
    data_dir = tmp_path / "data"
    served = start_serve(data_dir)
    marker = f"wf-restart-{uuid.uuid4().hex[:6]}"
    try:
        assert served.process.poll() is None
        import requests

        assert requests.get(served.base_url + "/healthz", timeout=5).status_code == 200
        assert requests.get(served.base_url + "/readyz", timeout=5).status_code == 200
        assert requests.get(served.base_url + "/", timeout=5).status_code == 200
        engine = sa.create_engine(_embedded_url(data_dir))
        with engine.begin() as conn:
            conn.execute(sa.text("SET ROLE flowledger_writer"))
            conn.execute(sa.text("INSERT INTO workflows (workflow_id) VALUES (:w)"), {"w": marker})
        engine.dispose()
    finally:
        assert served.stop() == 0
    assert not _postgres_running_in(data_dir), "SIGTERM must stop the embedded PostgreSQL"
    assert "gunicorn" in served.log().lower() or "Booting worker" in served.log()

    again = start_serve(data_dir)
    try:
        engine = sa.create_engine(_embedded_url(data_dir))
        with engine.connect() as conn:
            found = conn.execute(sa.text("SELECT count(*) FROM workflows WHERE workflow_id = :w"),
                                 {"w": marker}).scalar_one()
        engine.dispose()
        assert found == 1
    finally:
        assert again.stop() == 0


def _run_cli(args, env_extra, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLOWLEDGER_") and k != "DATABASE_URL"}
    env.update({"FLOWLEDGER_DATA_DIR": str(tmp_path / "d")})
    env.update(env_extra)
    return subprocess.run([sys.executable, "-m", "app", *args], capture_output=True, text=True, env=env,
                          timeout=120)


def _assert_one_clear_line(result, setting):
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert setting in lines[0]


def test_unreachable_database_url_stops_serve_with_one_line_naming_it(tmp_path):
    result = _run_cli(["serve"], {"DATABASE_URL": "postgresql://app@127.0.0.1:9/ledger"}, tmp_path)
    _assert_one_clear_line(result, "DATABASE_URL")


def test_unwritable_data_dir_stops_serve_with_one_line_naming_it(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    result = _run_cli(["serve"], {"FLOWLEDGER_DATA_DIR": str(blocker / "data")}, tmp_path)
    _assert_one_clear_line(result, "FLOWLEDGER_DATA_DIR")


def test_malformed_setting_stops_serve_with_one_line_naming_it(tmp_path):
    result = _run_cli(["serve"], {"FLOWLEDGER_PORT": "eighty"}, tmp_path)
    _assert_one_clear_line(result, "FLOWLEDGER_PORT")
