"""The ledger is insert-only for the application roles, enforced by PostgreSQL grants."""
import uuid

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import ProgrammingError

from services.db import LEDGER_TABLES, Database
from services.maintenance import ensure_partitions

KEYS = {
    "events": "event_id", "event_status_history": "id", "event_idempotency": "event_id",
    "executions": "execution_id", "execution_transitions": "id", "steps": "step_id",
    "step_success_keys": "idempotency_key", "payloads": "payload_id",
    "execution_audit_events": "id", "execution_logs": "id", "workflows": "workflow_id",
    "workflow_versions": "workflow_id", "payload_dictionaries": "dict_id",
    "archive_manifests": "archive_id", "archive_tier_changes": "id", "execution_archives": "execution_id",
    "alert_history": "id", "replays": "replay_id", "seals": "seal_id", "admin_audit_log": "id",
}


def _seed_one_row_everywhere(database: Database) -> dict[str, str]:
    """Insert one row per ledger table as the writer, the way the product writes."""
    ex, ev, step, pl, arch, rp = (uuid.uuid4() for _ in range(6))
    wf = f"wf-{uuid.uuid4().hex[:8]}"
    span = "b" * 16
    statements = [
        ("INSERT INTO workflows (workflow_id) VALUES (:wf)", {}),
        ("INSERT INTO workflow_versions (workflow_id, version, definition) VALUES (:wf, 1, '{}')", {}),
        ("INSERT INTO events (event_id, source_system, raw_body, payload_hash, size_bytes) "
         "VALUES (:ev, 'crm', '\\x7b7d', 'h', 2)", {}),
        ("INSERT INTO event_idempotency (source_system, idempotency_key, event_id) "
         "VALUES ('crm', :wf, :ev)", {}),
        ("INSERT INTO event_status_history (event_id, status) VALUES (:ev, 'routed')", {}),
        ("INSERT INTO executions (execution_id, workflow_id, trigger_source, trace_id, root_span_id) "
         "VALUES (:ex, :wf, 'manual', repeat('a', 32), :span)", {}),
        ("INSERT INTO execution_transitions (execution_id, seq, status, at) VALUES (:ex, 1, 'running', now())",
         {}),
        ("INSERT INTO steps (step_id, execution_id, seq, step_name, step_type, status, span_id) "
         "VALUES (:step, :ex, 1, 'a', 'action', 'completed', :span)", {}),
        ("INSERT INTO step_success_keys (idempotency_key, step_id, execution_id) VALUES (:wf, :step, :ex)", {}),
        ("INSERT INTO payloads (payload_id, execution_id, kind, codec, size_bytes, stored_bytes, sha256) "
         "VALUES (:pl, :ex, 'trigger', 'zstd', 1, 1, 'h')", {}),
        ("INSERT INTO execution_audit_events (execution_id, event_type) VALUES (:ex, 'CREATED')", {}),
        ("INSERT INTO execution_logs (execution_id, message) VALUES (:ex, 'hello')", {}),
        ("INSERT INTO payload_dictionaries (workflow_id, sample_count, data) VALUES (:wf, 1, '\\x00')", {}),
        ("INSERT INTO archive_manifests (archive_id, kind, uri, storage_class, size_bytes, sha256) "
         "VALUES (:arch, 'executions', 'file:///x', 'STANDARD_IA', 1, 'h')", {}),
        ("INSERT INTO archive_tier_changes (archive_id, storage_class) VALUES (:arch, 'GLACIER_IR')", {}),
        ("INSERT INTO execution_archives (execution_id, archive_id) VALUES (:ex, :arch)", {}),
        ("INSERT INTO alert_history (channel, kind, action) VALUES ('pagerduty', 'failure_rate', 'trigger')",
         {}),
        ("INSERT INTO replays (replay_id, requested_by, reason, selection, total) "
         "VALUES (:rp, 'ops', 'fix', '{}', 0)", {}),
        ("INSERT INTO seals (period_start, period_end, root, row_count) "
         "VALUES (now() - make_interval(secs => random() * 1e9), now(), 'r', 0)", {}),
        ("INSERT INTO admin_audit_log (actor, action) VALUES ('ops', 'test')", {}),
    ]
    params = {"ex": ex, "ev": ev, "step": step, "pl": pl, "arch": arch, "rp": rp, "wf": wf, "span": span}
    with database.writer() as conn:
        for sql, extra in statements:
            conn.execute(sa.text(sql), {**params, **extra})
    return {"wf": wf, "ex": str(ex)}


@pytest.fixture(scope="module")
def seeded(database: Database) -> dict[str, str]:
    return _seed_one_row_everywhere(database)


def _snapshot(database: Database, table: str) -> int:
    with database.admin() as conn:
        return conn.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one()


@pytest.mark.parametrize("table", LEDGER_TABLES)
@pytest.mark.parametrize("statement", ["UPDATE {t} SET {k} = {k}", "DELETE FROM {t}", "TRUNCATE {t}"])
def test_writer_cannot_update_delete_or_truncate_a_ledger_table(database, seeded, table, statement):
    rows_before = _snapshot(database, table)
    assert rows_before > 0

    with pytest.raises(ProgrammingError, match="permission denied"):
        with database.writer() as conn:
            conn.execute(sa.text(statement.format(t=table, k=KEYS[table])))

    assert _snapshot(database, table) == rows_before


@pytest.mark.parametrize("table", LEDGER_TABLES)
def test_reader_cannot_insert_or_delete(database, seeded, table):
    rows_before = _snapshot(database, table)
    with database.admin() as conn:
        columns = ", ".join(f'"{c}"' for c in conn.execute(sa.text(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = 'public' "
            "AND table_name = :t AND is_generated = 'NEVER' ORDER BY ordinal_position"), {"t": table}).scalars())
    with pytest.raises(ProgrammingError, match="permission denied"):
        with database.reader() as conn:
            conn.execute(sa.text(f"INSERT INTO {table} ({columns}) SELECT {columns} FROM {table} LIMIT 1"))
    with pytest.raises(ProgrammingError, match="permission denied"):
        with database.reader() as conn:
            conn.execute(sa.text(f"DELETE FROM {table}"))
    assert _snapshot(database, table) == rows_before


def test_writer_cannot_touch_a_partition_directly(database, seeded):
    with database.admin() as conn:
        partition = conn.execute(sa.text(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = 'steps'::regclass ORDER BY 1 LIMIT 1")).scalar_one()
    with pytest.raises(ProgrammingError, match="permission denied"):
        with database.writer() as conn:
            conn.execute(sa.text(f"DELETE FROM {partition}"))


def test_writer_cannot_rewrite_the_status_projection(database, seeded):
    with pytest.raises(ProgrammingError, match="permission denied"):
        with database.writer() as conn:
            conn.execute(sa.text("UPDATE execution_state SET status = 'completed'"))


def test_status_transitions_show_in_workflow_executions_without_any_update(database):
    execution_id = uuid.uuid4()
    seen = []
    with database.writer() as conn:
        conn.execute(sa.text(
            "INSERT INTO executions (execution_id, workflow_id, trigger_source, trace_id, root_span_id) "
            "VALUES (:ex, 'wf-status', 'webhook', repeat('c', 32), repeat('d', 16))"), {"ex": execution_id})
    for seq, status in enumerate(["pending", "running", "failed"]):
        if seq:
            with database.writer() as conn:
                conn.execute(sa.text(
                    "INSERT INTO execution_transitions (execution_id, seq, status, at, error_message) "
                    "VALUES (:ex, :seq, :status, now(), :err)"),
                    {"ex": execution_id, "seq": seq, "status": status,
                     "err": "boom" if status == "failed" else None})
        with database.reader() as conn:
            seen.append(conn.execute(sa.text(
                "SELECT status FROM workflow_executions WHERE execution_id = :ex"), {"ex": execution_id}
            ).scalar_one())

    assert seen == ["pending", "running", "failed"]
    with database.admin() as conn:
        updates = conn.execute(sa.text(
            "SELECT n_tup_upd FROM pg_stat_user_tables WHERE relname LIKE 'executions%'")).scalars().all()
    assert not any(updates), "executions rows must never be updated"


def test_a_second_final_outcome_for_one_execution_is_refused(database):
    execution_id = uuid.uuid4()
    with database.writer() as conn:
        conn.execute(sa.text(
            "INSERT INTO executions (execution_id, workflow_id, trigger_source, trace_id, root_span_id) "
            "VALUES (:ex, 'wf-final', 'manual', repeat('e', 32), repeat('f', 16))"), {"ex": execution_id})
        conn.execute(sa.text("INSERT INTO execution_transitions (execution_id, seq, status, at) "
                             "VALUES (:ex, 1, 'completed', now())"), {"ex": execution_id})
    with pytest.raises(sa.exc.IntegrityError):
        with database.writer() as conn:
            conn.execute(sa.text("INSERT INTO execution_transitions (execution_id, seq, status, at) "
                                 "VALUES (:ex, 2, 'failed', now())"), {"ex": execution_id})


def test_writer_may_create_next_months_partitions_through_the_owner_function(database):
    assert ensure_partitions(database, months_ahead=5) >= 0
    assert ensure_partitions(database, months_ahead=5) == 0


def test_authorised_removals_can_only_be_appended_by_the_maintainer(database):
    with database.maintainer() as conn:
        conn.execute(sa.text("INSERT INTO ledger_removals (kind, actor, table_name, row_key) "
                             "VALUES ('retention', 'test', 'steps', :k)"), {"k": str(uuid.uuid4())})
    for role, statement in (("writer", "INSERT INTO ledger_removals (kind, actor, table_name, row_key) "
                                       "VALUES ('retention', 'forger', 'steps', 'x')"),
                            ("writer", "DELETE FROM ledger_removals"),
                            ("maintainer", "DELETE FROM ledger_removals"),
                            ("maintainer", "UPDATE ledger_removals SET actor = 'someone else'")):
        with pytest.raises(ProgrammingError, match="permission denied"):
            with getattr(database, role)() as conn:
                conn.execute(sa.text(statement))
