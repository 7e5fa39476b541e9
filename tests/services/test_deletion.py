"""Force-delete: admins with the permission only, legal hold blocks it, verify tells it from tampering."""
import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from services import deletion, inspection, recording, seal_verify, sealing, step_recording, users
from services.errors import Conflict, Forbidden
from services.objectstore import open_store
from services.payloads import PayloadConfig
from services.recording import NewExecution
from services.step_recording import StepAttempt


@pytest.fixture
def ledger(fresh_database, tmp_path):
    fresh_database.migrate()
    cfg = PayloadConfig(store=open_store("", local_root=tmp_path / "objects"), inline_max_bytes=10_000,
                        train_dictionaries=False)
    with fresh_database.writer() as conn:
        users.create_user(conn, username="root-admin", password="correct horse battery", role="admin")
        users.create_user(conn, username="plain-admin", password="correct horse battery", role="admin")
        conn.execute(sa.text("UPDATE users SET permissions = ARRAY[:p] WHERE username = 'root-admin'"),
                     {"p": deletion.PERMISSION})
    return fresh_database, cfg


def _execution(database, cfg, workflow="wf-del", legal_hold=False):
    with database.writer() as conn:
        conn.execute(sa.text("INSERT INTO workflows (workflow_id) VALUES (:w) ON CONFLICT DO NOTHING"),
                     {"w": workflow})
        conn.execute(sa.text("INSERT INTO workflow_versions (workflow_id, version, definition, legal_hold) "
                             "VALUES (:w, 1, '{}', :h) ON CONFLICT DO NOTHING"), {"w": workflow, "h": legal_hold})
        rec = recording.create_execution(conn, cfg, NewExecution(workflow_id=workflow, trigger_payload={"a": 1}))
        recording.start_execution(conn, execution_id=rec.execution_id)
        step_recording.record_step(conn, cfg, execution_id=rec.execution_id, workflow_id=workflow, attempt=StepAttempt(
            "export", "action", 0, "completed", output={"rows": ["x" * 50] * 1000}))
        recording.finish_execution(conn, execution_id=rec.execution_id, status="completed")
    return rec.execution_id


def _seal(database, cfg):
    """Seal the executions recorded so far, as if they were written two hours ago.

    Seals only cover closed hours; moving the test's rows back (as superuser) lets the real
    clock's open hour receive what the test does next, as it would in production.
    """
    with database.admin() as conn:
        for table, column in (("executions", "created_at"), ("steps", "created_at"), ("payloads", "created_at"),
                              ("execution_transitions", "recorded_at"), ("execution_audit_events", '"timestamp"')):
            conn.execute(sa.text(f"UPDATE {table} SET {column} = {column} - interval '2 hours'"))
        conn.execute(sa.text("UPDATE execution_state SET created_at = created_at - interval '2 hours'"))
    with database.writer() as conn:
        sealing.seal_closed_periods(conn, cfg.store, now=datetime.now(UTC))


def test_force_delete_removes_rows_and_objects_keeps_audit_events_and_verify_passes(ledger):
    database, cfg = ledger
    execution_id = _execution(database, cfg)
    kept = _execution(database, cfg)
    _seal(database, cfg)
    assert len(cfg.store.list("")) >= 2

    with database.writer() as conn:
        deletion.check_permission(conn, username="root-admin")
    with database.maintainer() as conn:
        done = deletion.force_delete(conn, cfg.store, execution_id=execution_id, actor="root-admin",
                                     reason="customer data sent by mistake")

    assert done.objects == 1 and done.rows["steps"] == 1 and done.rows["executions"] == 1
    with database.admin() as conn:
        for table in ("executions", "execution_state", "steps", "payloads", "execution_transitions"):
            assert conn.execute(sa.text(f"SELECT count(*) FROM {table} WHERE execution_id = :e"),
                                {"e": execution_id}).scalar() == 0, table
        audit = inspection.audit_events(conn, execution_id)
    with database.admin() as conn:
        report = seal_verify.verify(conn, store=cfg.store)
    assert [e["event_type"] for e in audit][-1] == "DELETED"
    assert audit[-1]["metadata"]["reason"] == "customer data sent by mistake"
    assert {"CREATED", "STARTED", "COMPLETED"} <= {e["event_type"] for e in audit}
    assert not any(str(execution_id) in uri for uri in cfg.store.list(""))
    assert any(str(kept) in uri for uri in cfg.store.list(""))
    assert report.ok, report.mismatches
    assert {(a["table"], a["kind"]) for a in report.authorised} >= {("executions", "force_delete"),
                                                                     ("steps", "force_delete")}


def test_tampering_next_to_an_authorised_deletion_is_still_reported(ledger):
    database, cfg = ledger
    deleted, tampered = _execution(database, cfg), _execution(database, cfg)
    _seal(database, cfg)
    with database.maintainer() as conn:
        deletion.force_delete(conn, cfg.store, execution_id=deleted, actor="root-admin", reason="mistake")
    with database.admin() as conn:
        conn.execute(sa.text("DELETE FROM execution_transitions WHERE execution_id = :e"), {"e": tampered})
    with database.admin() as conn:
        report = seal_verify.verify(conn, store=cfg.store)
    assert not report.ok
    assert {m["key"].split(":")[0] for m in report.mismatches} == {str(tampered)}


def test_without_the_permission_force_delete_is_refused(ledger):
    database, _ = ledger
    with database.writer() as conn:
        with pytest.raises(Forbidden):
            deletion.check_permission(conn, username="plain-admin")
        with pytest.raises(Forbidden):
            deletion.check_permission(conn, username="nobody")


def test_legal_hold_blocks_force_delete(ledger):
    database, cfg = ledger
    execution_id = _execution(database, cfg, workflow="wf-held", legal_hold=True)
    with pytest.raises(Conflict, match="legal hold"):
        with database.maintainer() as conn:
            deletion.force_delete(conn, cfg.store, execution_id=execution_id, actor="root-admin", reason="x")
    with database.reader() as conn:
        assert inspection.get_execution(conn, cfg, execution_id)["status"] == "completed"


def test_cli_force_delete_needs_the_permission_and_says_what_it_did(ledger, tmp_path):
    database, cfg = ledger
    execution_id = _execution(database, cfg)
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("FLOWLEDGER_")},
           "DATABASE_URL": database.admin_url.render_as_string(hide_password=False),
           "FLOWLEDGER_DATA_DIR": str(tmp_path)}
    cmd = [sys.executable, "-m", "app", "execution", "delete", str(execution_id), "--force", "--reason", "gdpr"]

    refused = subprocess.run([*cmd, "--user", "plain-admin"], capture_output=True, text=True, env=env, timeout=120)
    done = subprocess.run([*cmd, "--user", "root-admin"], capture_output=True, text=True, env=env, timeout=120)

    assert refused.returncode != 0 and "executions.force-delete" in refused.stderr
    assert done.returncode == 0, done.stderr
    assert "audit events kept" in done.stdout
    with database.admin() as conn:
        entry = conn.execute(sa.text("SELECT actor, detail FROM admin_audit_log WHERE action = "
                                     "'execution.force_delete'")).one()
    assert entry.actor == "root-admin" and json.loads(json.dumps(entry.detail))["reason"] == "gdpr"


def test_api_force_delete_answers_401_403_or_deletes_by_permission(ledger, tmp_path):
    from app.factory import create_app
    from app.runtime import Runtime
    from app.settings import Settings
    from services import db, tokens

    database, cfg = ledger
    execution_id = _execution(database, cfg)
    with database.writer() as conn:
        bearer = {}
        for name in ("plain-admin", "root-admin"):
            user = users.find_user(conn, name)
            bearer[name] = tokens.create_user_token(conn, user_id=user.user_id, created_by="test",
                                                    now=datetime.now(UTC)).secret
    previous = db._current
    settings = Settings(_env_file=None, data_dir=tmp_path, scheduler_enabled=False)
    app = create_app(runtime=Runtime(settings=settings, database=database), start_scheduler=False)
    try:
        client = app.test_client()
        url = f"/api/v1/executions/{execution_id}"
        anonymous = client.delete(url, json={"reason": "x"})
        without = client.delete(url, json={"reason": "x"}, headers={"Authorization": f"Bearer {bearer['plain-admin']}"})
        allowed = client.delete(url, json={"reason": "wrong customer"},
                                headers={"Authorization": f"Bearer {bearer['root-admin']}"})
    finally:
        db._current = previous
    assert anonymous.status_code == 401
    assert without.status_code == 403 and without.mimetype == "application/problem+json"
    assert allowed.status_code == 200, allowed.get_json()
    assert allowed.get_json()["deleted"] is True


def test_verify_tells_erasure_and_end_of_retention_from_tampering(ledger):
    from services import erasure, retention

    database, cfg = ledger
    with database.writer() as conn:
        conn.execute(sa.text("INSERT INTO workflows (workflow_id) VALUES ('wf-short') ON CONFLICT DO NOTHING"))
        conn.execute(sa.text("INSERT INTO workflow_versions (workflow_id, version, definition, retention_days) "
                             "VALUES ('wf-short', 1, '{}', 7) ON CONFLICT DO NOTHING"))
        for customer in ("erase-me@example.com", "keep-me@example.com"):
            rec = recording.create_execution(conn, cfg, NewExecution(
                workflow_id="wf-short", trigger_payload={"customer": {"email": customer}}))
            recording.start_execution(conn, execution_id=rec.execution_id)
            step_recording.record_step(conn, cfg, execution_id=rec.execution_id, workflow_id="wf-short",
                                       attempt=StepAttempt("mail", "action", 0, "completed", output={"to": customer}))
            recording.finish_execution(conn, execution_id=rec.execution_id, status="completed")
    _seal(database, cfg)

    erasure.erase(database, cfg, subject_field="customer.email", value="erase-me@example.com",
                  requested_by="dpo@example.com", now=datetime.now(UTC))
    retention.prune(database, cfg, now=datetime.now(UTC) + timedelta(days=400),
                    options=retention.RetentionOptions(audit_retention_days=30))

    with database.admin() as conn:
        left = conn.execute(sa.text("SELECT count(*) FROM executions WHERE workflow_id = 'wf-short'")).scalar()
    with database.admin() as conn:
        report = seal_verify.verify(conn, store=cfg.store)
    assert left == 0
    assert report.ok, report.mismatches[:5]
    assert {a["kind"] for a in report.authorised} >= {"erasure", "retention"}
