"""`flowledger replay`: a dry-run plan, then a replay with a progress bar; `flowledger workflows apply`."""
from __future__ import annotations

import json
import re

import pytest
from click.testing import CliRunner

from app.cli import cli
from services.runner import Runner
from tests.services.runner_helpers import Downstream, event_status, ingest_and_route, unique, wait_for


@pytest.fixture
def downstream():
    server = Downstream()
    yield server
    server.close()


def test_cli_applies_a_workflow_plans_and_replays_failed_events(database, runtime, tmp_path, downstream):
    env = {"DATABASE_URL": database.admin_url.render_as_string(hide_password=False),
           "FLOWLEDGER_DATA_DIR": str(tmp_path)}
    workflow_id, source = unique("cli-replay"), unique("crm")
    path = tmp_path / "wf.yaml"
    path.write_text(f"id: {workflow_id}\nname: cli\ntrigger: {{type: event, source: {source}}}\n"
                    f"steps:\n  - {{name: notify, type: action, url: '{downstream.url}/notify'}}\n")
    applied = CliRunner().invoke(cli, ["workflows", "apply", str(path)], env=env)
    assert applied.exit_code == 0, applied.output
    assert f"{workflow_id} version 1" in applied.output

    downstream.statuses["/notify"] = 500
    runner = Runner(database, runtime.payloads, threads=2)
    try:
        ids = [ingest_and_route(database, runtime, runner, source=source, event_type="ping", payload={"n": n})[0]
               for n in range(3)]
        for event_id in ids:
            wait_for(lambda e=event_id: event_status(database, e) == "dead_lettered")
    finally:
        runner.shutdown(wait=False)
    downstream.statuses["/notify"] = 200

    planned = CliRunner().invoke(cli, ["replay", "--source", source, "--status", "failed", "--dry-run", "--json"],
                                 env=env)
    assert planned.exit_code == 0, planned.output
    assert json.loads(planned.output)["count"] == 3
    readable = CliRunner().invoke(cli, ["replay", "--source", source, "--status", "failed", "--dry-run"], env=env)
    assert readable.output.startswith("dry run, nothing changed: 3 event(s) would be replayed")
    assert f"{workflow_id} v1: 3 event(s)" in readable.output
    assert re.search(r"^  notify\s+3\s+0  yes$", readable.output, re.M), readable.output
    done = CliRunner().invoke(cli, ["replay", "--source", source, "--status", "failed", "--reason", "fixed",
                                    "--workers", "2"], env=env)
    assert done.exit_code == 0, done.output
    summary = json.loads(done.output.strip().splitlines()[-1])
    assert (summary["done"], summary["failed"]) == (3, 0)
    assert {event_status(database, e) for e in ids} == {"processed"}
