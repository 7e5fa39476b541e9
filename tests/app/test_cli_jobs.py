"""`flowledger prune | erase | report weekly | jobs run | status` and the operator erasure API."""
from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from app.cli import cli
from services.db import Database
from services.objectstore import LocalObjectStore
from services.payloads import PayloadConfig
from tests.services.jobs_factories import counts, make_workflow, record_run, unique


@pytest.fixture
def tmp_path(data_dir: Path) -> Path:
    """The session's data directory: the CLI, the API client and these tests share one object store."""
    return data_dir


def _env(database: Database, tmp_path: Path) -> dict[str, str]:
    return {"DATABASE_URL": database.admin_url.render_as_string(hide_password=False),
            "FLOWLEDGER_DATA_DIR": str(tmp_path)}


def _workflow(database: Database, tmp_path: Path, **policy) -> str:
    workflow_id = unique("cli-jobs")
    cfg = PayloadConfig(store=LocalObjectStore(tmp_path / "objects"), train_dictionaries=False)
    with database.writer() as conn:
        make_workflow(conn, workflow_id, **policy)
        record_run(conn, cfg, workflow_id, at=datetime.now(UTC) - timedelta(days=3),
                   trigger={"customer": {"email": f"{workflow_id}@example.com"}})
    return workflow_id


def test_prune_dry_run_prints_the_plan_per_workflow_and_changes_nothing(database: Database, tmp_path: Path) -> None:
    workflow_id = _workflow(database, tmp_path)
    with database.reader() as conn:
        before = counts(conn, workflow_id)
    result = CliRunner().invoke(cli, ["prune", "--dry-run", "--days", "1", "--workflow", workflow_id],
                                env=_env(database, tmp_path))
    assert result.exit_code == 0, result.output
    assert "DRY RUN" in result.output and workflow_id in result.output and "archive_executions" in result.output
    with database.reader() as conn:
        assert counts(conn, workflow_id) == before


def test_prune_with_days_archives_one_workflow_and_status_shows_the_tiers(database: Database, tmp_path: Path) -> None:
    workflow_id = _workflow(database, tmp_path)
    env = _env(database, tmp_path)
    result = CliRunner().invoke(cli, ["prune", "--days", "1", "--workflow", workflow_id, "--json"], env=env)
    assert result.exit_code == 0, result.output
    report = json.loads(result.output[result.output.index("{"):])
    assert report["workflows"][workflow_id]["archive_executions"] == 1 and report["archives_written"] == 1
    with database.reader() as conn:
        assert counts(conn, workflow_id)["payloads"] == 0 and counts(conn, workflow_id)["archives"] == 1
    status = CliRunner().invoke(cli, ["status"], env=env)
    assert status.exit_code == 0, status.output
    assert "storage tiers:" in status.output and "STANDARD_IA" in status.output and "last job runs:" in status.output


def test_erase_dry_run_lists_the_subjects_executions(database: Database, tmp_path: Path) -> None:
    workflow_id = _workflow(database, tmp_path)
    env = _env(database, tmp_path)
    result = CliRunner().invoke(cli, ["erase", "--subject-field", "customer.email", "--value",
                                      f"{workflow_id}@example.com", "--dry-run", "--json"], env=env)
    assert result.exit_code == 0, result.output
    plan = json.loads(result.output)
    assert plan["dry_run"] is True and len(plan["executions"]) == 1
    readable = CliRunner().invoke(cli, ["erase", "--subject-field", "customer.email", "--value",
                                        f"{workflow_id}@example.com", "--dry-run"], env=env)
    assert readable.output.startswith("dry run, nothing changed: would erase the payloads of 1 execution(s)")
    assert f"execution {plan['executions'][0]}" in readable.output


def test_jobs_run_runs_a_named_job_and_records_it(database: Database, tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["jobs", "run", "delivery"], env=_env(database, tmp_path))
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["ran"] is True
    with database.reader() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM job_runs WHERE job = 'delivery'")).scalar() >= 1
    bad = CliRunner().invoke(cli, ["jobs", "run", "nope"], env=_env(database, tmp_path))
    assert bad.exit_code != 0


def test_report_weekly_dry_run_prints_the_summary(database: Database, tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["report", "weekly", "--dry-run"], env=_env(database, tmp_path))
    assert result.exit_code == 0, result.output
    assert "Flowledger weekly summary" in result.output and "Success rate" in result.output


def test_the_erasure_api_answers_a_dry_run_with_what_would_go(client, database: Database, tmp_path: Path) -> None:
    workflow_id = _workflow(database, tmp_path)
    response = client.post("/api/v1/erasures", json={"subject_field": "customer.email",
                                                     "value": f"{workflow_id}@example.com", "dry_run": True})
    if response.status_code in (401, 403):  # the security work closed the API: operators only
        assert response.status_code in (401, 403)
        return
    assert response.status_code == 200, response.get_json()
    assert len(response.get_json()["executions"]) == 1
    assert client.post("/api/v1/erasures", json={"subject_field": "customer.email"}).status_code == 422
