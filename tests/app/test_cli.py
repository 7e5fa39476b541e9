"""The command line: help, config, migrate twice, status, the `workflow` alias, workflows list and apply errors."""
import json
import os
import shutil
import socket
import subprocess
import sys

from click.testing import CliRunner

from app.cli import cli


def _env(database, tmp_path):
    return {"DATABASE_URL": database.admin_url.render_as_string(hide_password=False),
            "FLOWLEDGER_DATA_DIR": str(tmp_path)}


def test_help_lists_every_command():
    result = CliRunner().invoke(cli, ["--help"])
    assert result.exit_code == 0
    for command in ("serve", "migrate", "config", "status"):
        assert command in result.output


def test_config_redacts_secrets(tmp_path):
    env = {"DATABASE_URL": "postgresql://app:hunter2-db@db.internal/ledger",
           "FLOWLEDGER_SECRET_KEY": "s3cr3t-key", "FLOWLEDGER_WRITER_PASSWORD": "writer-pw",
           "FLOWLEDGER_SLACK_WEBHOOK_URL": "https://hooks.example/T000/B000/XXXX"}
    result = CliRunner().invoke(cli, ["config", "--json"], env=env)
    assert result.exit_code == 0
    for secret in ("hunter2-db", "s3cr3t-key", "writer-pw", "XXXX"):
        assert secret not in result.output
    values = json.loads(result.output)
    assert values["database_url"].startswith("postgresql://app:***@db.internal")
    assert values["port"] == 8050


def test_migrate_twice_is_a_no_op_the_second_time(fresh_database, tmp_path):
    runner = CliRunner()
    first = runner.invoke(cli, ["migrate"], env=_env(fresh_database, tmp_path))
    second = runner.invoke(cli, ["migrate"], env=_env(fresh_database, tmp_path))
    assert first.exit_code == 0 and "migrated from empty" in first.output
    assert second.exit_code == 0 and "nothing to do" in second.output


def test_status_prints_schema_version_and_row_counts(database, tmp_path):
    result = CliRunner().invoke(cli, ["status", "--json"], env=_env(database, tmp_path))
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["schema_version"] == report["schema_head"]
    assert "execution_audit_events" in report["rows"]
    assert all(isinstance(v, int) for v in report["rows"].values())


def test_the_cli_also_answers_to_the_name_workflow():
    assert shutil.which("workflow") and shutil.which("flowledger")


def test_workflows_list_says_how_to_add_one_then_lists_them_in_columns(fresh_database, tmp_path):
    fresh_database.migrate()
    env = _env(fresh_database, tmp_path)
    empty = CliRunner().invoke(cli, ["workflows", "list"], env=env)
    assert empty.exit_code == 0 and "no workflows yet: flowledger workflows apply FILE" in empty.output
    for workflow_id in ("deal-won", "nightly-revenue-report"):
        definition = tmp_path / f"{workflow_id}.yaml"
        definition.write_text(f"id: {workflow_id}\nname: {workflow_id} flow\ntrigger: {{type: manual}}\n"
                              "steps:\n  - {name: noop, type: transform, fields: {ok: 'a'}}\n")
        applied = CliRunner().invoke(cli, ["workflows", "apply", str(definition)], env=env)
        assert applied.exit_code == 0, applied.output
    listed = CliRunner().invoke(cli, ["workflows", "list"], env=env).output.splitlines()
    assert [line.split()[:3] for line in listed] == [["deal-won", "v1", "manual"],
                                                     ["nightly-revenue-report", "v1", "manual"]]
    assert len({line.index(" v1 ") for line in listed}) == 1  # the version column lines up


def test_a_rejected_definition_names_each_problem_on_stderr(fresh_database, tmp_path):
    fresh_database.migrate()
    bad = tmp_path / "bad.yaml"
    bad.write_text("id: bad\ntrigger: {type: manual}\nsteps:\n  - {name: noop, type: transform, fields: {ok: [1]}}\n")
    result = subprocess.run([sys.executable, "-m", "app", "workflows", "apply", str(bad)], capture_output=True,
                            text=True, env={**os.environ, **_env(fresh_database, tmp_path)}, timeout=120)
    assert result.returncode == 2
    assert "workflow definition has 2 problem(s)" in result.stderr
    assert "  - name: Field required" in result.stderr and "  - steps.0.fields.ok: " in result.stderr


def test_serve_on_a_port_in_use_says_so_at_once_before_starting_the_database(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {**{k: v for k, v in os.environ.items() if not k.startswith("FLOWLEDGER_") and k != "DATABASE_URL"},
               "FLOWLEDGER_DATA_DIR": str(tmp_path / "data"), "FLOWLEDGER_PORT": str(port)}
        done = subprocess.run([sys.executable, "-m", "app", "serve"], env=env, capture_output=True, text=True,
                              timeout=120)
    assert done.returncode == 2
    assert f"cannot listen on 127.0.0.1:{port}: Address already in use" in done.stderr
    assert f"FLOWLEDGER_PORT={port + 1} flowledger serve" in done.stderr
    assert not (tmp_path / "data" / "pgdata").exists()  # refused before the embedded PostgreSQL started


def test_demo_points_at_where_serve_will_listen(fresh_database, tmp_path):
    env = {**_env(fresh_database, tmp_path), "FLOWLEDGER_PORT": "8123"}
    result = CliRunner().invoke(cli, ["demo", "--executions", "20", "--days", "1"], env=env)
    assert result.exit_code == 0, result.output
    assert "over 1 day for" in result.output
    assert "flowledger serve, then http://127.0.0.1:8123/" in result.output


def test_links_use_the_public_url_else_a_reachable_form_of_the_bind_address():
    from app.settings import Settings

    assert Settings(public_url="https://ledger.example.com/").dashboard_url == "https://ledger.example.com"
    assert Settings(host="0.0.0.0", port=9000).dashboard_url == "http://127.0.0.1:9000"
    assert Settings(host="::", port=9000).dashboard_url == "http://[::1]:9000"
    assert Settings(host="fd00::5", port=9000).dashboard_url == "http://[fd00::5]:9000"
    assert Settings(host="ledger.internal").dashboard_url == "http://ledger.internal:8050"
    behind_proxy = Settings(public_url="https://ledger.example.com", host="0.0.0.0", port=9000)
    assert behind_proxy.listen_url == "http://127.0.0.1:9000"  # what serve prints as where it listens


def test_alerts_and_weekly_reports_link_to_where_serve_listens_without_a_public_url(database, tmp_path):
    from app.runtime import Runtime
    from app.scheduler import alert_config
    from app.settings import Settings

    runtime = Runtime(settings=Settings(_env_file=None, data_dir=tmp_path, port=9123), database=database)
    assert alert_config(runtime).public_url == "http://127.0.0.1:9123"
    report = CliRunner().invoke(cli, ["report", "weekly", "--dry-run"],
                                env={**_env(database, tmp_path), "FLOWLEDGER_PORT": "9123"})
    assert report.exit_code == 0, report.output
    assert "http://127.0.0.1:9123/" in report.output and "localhost:8050" not in report.output
