"""Storage forecast: matches a hand computation, and flags a workflow whose payloads grew tenfold."""
import random
import uuid
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from click.testing import CliRunner

from app.cli import cli
from services import fake_data, reporting
from services.forecast import storage_forecast
from services.reporting import ExecutionReport

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


def _record(database, runtime, workflow, day_offset, size_hint, count):
    rng = random.Random(day_offset)
    with database.writer() as conn:
        for i in range(count):
            start = NOW - timedelta(days=day_offset, hours=1, minutes=i)
            reporting.report_execution(conn, runtime.payloads, ExecutionReport(
                workflow_id=workflow, status="completed", started_at=start, completed_at=start + timedelta(seconds=2),
                steps=[{"step_name": "sync", "status": "completed",
                        "output": fake_data.step_payload(rng, step_name="sync_orders", size_hint=size_hint)}]))


def _hand_computed(database, workflow, since):
    with database.admin() as conn:
        rows = conn.execute(sa.text(
            "SELECT s.execution_id, COALESCE(sum(p.stored_bytes), 0) AS bytes FROM execution_state s "
            "LEFT JOIN payloads p ON p.execution_id = s.execution_id WHERE s.workflow_id = :w "
            "AND s.started_at >= :since GROUP BY 1"), {"w": workflow, "since": since}).all()
    return len(rows), sum(int(r.bytes) for r in rows)


def test_forecast_matches_a_hand_computation(database, runtime):
    workflow = f"wf-fc-{uuid.uuid4().hex[:6]}"
    for day in range(1, 8):
        _record(database, runtime, workflow, day, 2000, 3)
    with database.reader() as conn:
        [row] = storage_forecast(conn, now=NOW, workflow_id=workflow, default_retention_days=90)
    count, total = _hand_computed(database, workflow, NOW.replace(hour=0) - timedelta(days=7))

    assert row["executions_per_day"] == round(count / 7, 2)
    assert row["bytes_per_execution"] == round(total / count, 1)
    assert row["steady_state_bytes"] == int(count / 7 * 90 * (total / count))
    assert row["forecast_30d_bytes"] == int(row["hot_bytes"] + row["object_bytes"] + count / 7 * 30 * (total / count))
    assert row["jumped"] is False


def test_a_workflow_whose_payloads_grow_tenfold_is_flagged(database, runtime):
    workflow = f"wf-jump-{uuid.uuid4().hex[:6]}"
    for day in range(2, 8):
        _record(database, runtime, workflow, day, 1000, 2)
    _record(database, runtime, workflow, 0, 10000, 2)
    with database.reader() as conn:
        [row] = storage_forecast(conn, now=NOW, workflow_id=workflow)
    assert row["jumped"] is True
    assert row["latest_bytes_per_execution"] > 3 * row["median_7d_bytes_per_execution"]


def test_status_storage_prints_the_forecast(database, runtime, tmp_path):
    workflow = f"wf-cli-fc-{uuid.uuid4().hex[:6]}"
    _record(database, runtime, workflow, 0, 1500, 2)
    env = {"DATABASE_URL": database.admin_url.render_as_string(hide_password=False),
           "FLOWLEDGER_DATA_DIR": str(tmp_path)}
    result = CliRunner().invoke(cli, ["status", "--storage"], env=env)
    assert result.exit_code == 0, result.output
    assert workflow in result.output and "steady" in result.output
