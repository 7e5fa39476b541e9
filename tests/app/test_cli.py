"""The command line: help, config redaction, migrate twice, status counts, the `workflow` alias."""
import json
import shutil

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
