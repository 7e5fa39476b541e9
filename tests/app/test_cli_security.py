"""The security CLI: tokens shown once, users and roles, verify's exit code, serve's bind refusal, redaction."""
from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from click.testing import CliRunner

from app.cli import cli
from services import recording, sealing, step_recording
from services.objectstore import LocalObjectStore
from services.payloads import PayloadConfig
from services.recording import NewExecution
from services.step_recording import StepAttempt


def _env(database, tmp_path, **extra):
    return {"DATABASE_URL": database.admin_url.render_as_string(hide_password=False),
            "FLOWLEDGER_DATA_DIR": str(tmp_path), **extra}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _run(args, env, input=None):
    return CliRunner().invoke(cli, args, env=env, input=input, catch_exceptions=False)


def test_a_token_is_printed_once_listed_without_its_secret_and_revocable(fresh_database, tmp_path):
    fresh_database.migrate()
    env = _env(fresh_database, tmp_path)
    created = _run(["token", "create", "--source", "crm", "--signed"], env)
    assert created.exit_code == 0, created.output
    secret = re.search(r"^token\s+(fli_\S+)$", created.output, re.M).group(1)
    signing = re.search(r"^signing key\s+(whsec_\S+)$", created.output, re.M).group(1)
    token_id = re.search(r"^token id\s+(\S+)$", created.output, re.M).group(1)
    listed = _run(["token", "list"], env)
    assert "crm" in listed.output and "never" in listed.output and "active" in listed.output
    assert secret not in listed.output and signing not in listed.output
    assert secret not in _run(["token", "list", "--json"], env).output
    assert _run(["token", "revoke", token_id[:8]], env).exit_code == 0
    assert "revoked" in _run(["token", "list"], env).output
    with fresh_database.admin() as conn:
        stored = conn.execute(sa.text("SELECT token_hash FROM api_tokens")).scalar()
        audit = conn.execute(sa.text("SELECT action FROM admin_audit_log ORDER BY id")).scalars().all()
    assert stored != secret and secret not in stored
    assert audit == ["token.create", "token.revoke"]


def test_users_are_created_listed_given_roles_and_disabled(fresh_database, tmp_path):
    fresh_database.migrate()
    env = _env(fresh_database, tmp_path)
    assert _run(["user", "create", "ada", "--role", "admin", "--password-stdin"], env,
                input="a long enough password\n").exit_code == 0
    assert _run(["user", "create", "bob", "--password-stdin"], env, input="another long password\n").exit_code == 0
    assert _run(["user", "set-role", "bob", "operator"], env).exit_code == 0
    assert _run(["user", "disable", "bob"], env).exit_code == 0
    listed = json.loads(_run(["user", "list", "--json"], env).output)
    assert {(u["username"], u["role"], u["disabled"]) for u in listed} == {
        ("ada", "admin", False), ("bob", "operator", True)}
    with fresh_database.admin() as conn:
        hashes = conn.execute(sa.text("SELECT password_hash FROM users")).scalars().all()
    assert all(h.startswith("$argon2id$") for h in hashes)
    short = CliRunner().invoke(cli, ["user", "create", "eve", "--password-stdin"], env=env, input="short\n")
    assert short.exit_code != 0


def test_the_reader_role_cannot_read_credentials(fresh_database):
    fresh_database.migrate()
    for table in ("users", "api_tokens", "app_secrets"):
        with fresh_database.reader() as conn:
            try:
                conn.execute(sa.text(f"SELECT * FROM {table}"))
            except sa.exc.ProgrammingError as exc:
                assert "permission denied" in str(exc)
            else:
                raise AssertionError(f"reader could read {table}")


def test_verify_passes_untouched_and_names_all_three_tampered_rows(fresh_database, tmp_path):
    fresh_database.migrate()
    store = LocalObjectStore(tmp_path / "objects")
    cfg = PayloadConfig(store=store, train_dictionaries=False)
    with fresh_database.writer() as conn:
        record = recording.create_execution(conn, cfg, NewExecution(workflow_id="wf-cli", trigger_payload={"x": 1}))
        step = step_recording.record_step(conn, cfg, execution_id=record.execution_id, workflow_id="wf-cli",
                                          attempt=StepAttempt(step_name="call", step_type="action", seq=1,
                                                              status="completed", output={"status": "ok", "n": 7}))
        recording.finish_execution(conn, execution_id=record.execution_id, status="completed")
    with fresh_database.writer() as conn:
        sealing.seal_closed_periods(conn, store, now=datetime.now(UTC) + timedelta(hours=2))
    env = _env(fresh_database, tmp_path)
    clean = _run(["verify"], env)
    assert clean.exit_code == 0 and clean.output.startswith("OK"), clean.output
    forged = uuid.uuid4()
    with fresh_database.admin() as conn:
        conn.execute(sa.text("UPDATE payloads SET data = set_byte(data, 19, get_byte(data, 19) # 1) "
                             "WHERE payload_id = :p"), {"p": step.output_payload_id})
        audit_id = conn.execute(sa.text("DELETE FROM execution_audit_events WHERE id = (SELECT min(id) FROM "
                                        "execution_audit_events) RETURNING id")).scalar()
        sealed_at = conn.execute(sa.text("SELECT min(period_start) FROM seals")).scalar()
        conn.execute(sa.text(
            "INSERT INTO executions (execution_id, created_at, workflow_id, trigger_source, trace_id, root_span_id) "
            "VALUES (:id, :at, 'wf-cli', 'manual', repeat('c', 32), repeat('d', 16))"),
            {"id": forged, "at": sealed_at + timedelta(minutes=1)})
    tampered = _run(["verify"], env)
    assert tampered.exit_code == 1
    assert re.search(rf"CHANGED\s+payloads\s+{step.output_payload_id}", tampered.output)
    assert re.search(rf"REMOVED\s+execution_audit_events\s+{audit_id}\b", tampered.output)
    assert re.search(rf"ADDED\s+executions\s+{forged}", tampered.output)
    assert _run(["verify", "--since", "2999-01-01"], env).exit_code == 0


def test_seal_says_when_the_open_hour_can_be_sealed_and_then_how_far_it_sealed(fresh_database, tmp_path,
                                                                               monkeypatch):
    fresh_database.migrate()
    now = datetime.now(UTC)  # before the rows, so the rows' hour is never a closed one at `now`
    cfg = PayloadConfig(store=LocalObjectStore(tmp_path / "objects"), train_dictionaries=False)
    with fresh_database.writer() as conn:
        recording.create_execution(conn, cfg, NewExecution(workflow_id="wf-seal-cli"))
    env = _env(fresh_database, tmp_path)
    monkeypatch.setattr("app.cli_security._now", lambda: now)
    waiting = _run(["seal"], env)
    hour = sealing.period_of(now - sealing.GRACE)  # the hour still open for sealing at `now`
    ready = hour + sealing.PERIOD + sealing.GRACE
    assert waiting.exit_code == 0 and waiting.output.startswith("nothing to seal yet."), waiting.output
    assert f"The hour from {hour:%H:00} UTC can be sealed from {ready:%Y-%m-%d %H:%M} UTC" in waiting.output
    later = now + timedelta(hours=2)
    monkeypatch.setattr("app.cli_security._now", lambda: later)
    done = _run(["seal"], env)
    through = sealing.period_of(later - sealing.GRACE)
    assert re.match(rf"sealed \d+ period\(s\); sealed through {through:%Y-%m-%d %H:00} UTC", done.output), done.output


def test_config_output_never_shows_secrets(tmp_path):
    env = {"FLOWLEDGER_SECRET_KEY": "session-signing-key-xyz", "DATABASE_URL": "postgresql://u:db-pw-123@h/d",
           "FLOWLEDGER_SMTP_PASSWORD": "smtp-pw-456", "FLOWLEDGER_DATA_DIR": str(tmp_path)}
    for args in (["config"], ["config", "--json"]):
        output = _run(args, env).output
        for secret in env.values():
            if secret != str(tmp_path):
                assert secret not in output


def test_serve_refuses_a_non_loopback_bind_while_no_user_exists(fresh_database, tmp_path):
    fresh_database.migrate()
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("FLOWLEDGER_")},
           **_env(fresh_database, tmp_path), "FLOWLEDGER_HOST": "0.0.0.0", "FLOWLEDGER_PORT": str(_free_port())}
    done = subprocess.run([sys.executable, "-m", "app", "serve"], env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 2
    assert "FLOWLEDGER_HOST=0.0.0.0 refused" in done.stderr and "flowledger user create" in done.stderr

