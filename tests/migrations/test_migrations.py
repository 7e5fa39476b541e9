"""Migrations: from empty to head, idempotent, down and up again, forward from an older version."""
import sqlalchemy as sa

import migrations
from services.db import LEDGER_TABLES, Database


def _tables(database: Database) -> set[str]:
    with database.admin() as conn:
        rows = conn.execute(sa.text(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'v') AND NOT c.relispartition"))
        return {r[0] for r in rows}


def test_migrations_from_empty_reach_every_head_and_create_the_ledger(fresh_database: Database):
    before, after = fresh_database.migrate()

    assert before == set()
    assert after == migrations.heads()
    assert set(LEDGER_TABLES) | {"workflow_executions", "workflow_execution_steps"} <= _tables(fresh_database)
    fresh_database.ping()


def test_running_migrations_again_changes_nothing(fresh_database: Database):
    fresh_database.migrate()
    tables = _tables(fresh_database)

    before, after = fresh_database.migrate()

    assert before == after == migrations.heads()
    assert _tables(fresh_database) == tables


def test_schema_goes_down_to_empty_and_up_again(fresh_database: Database):
    fresh_database.migrate()
    with fresh_database.admin() as conn:
        migrations.downgrade(conn, fresh_database.roles, "base")
    assert "executions" not in _tables(fresh_database)

    fresh_database.migrate()

    assert "executions" in _tables(fresh_database)
    fresh_database.ping()


def test_a_database_at_an_older_version_migrates_forward(fresh_database: Database):
    with fresh_database.admin() as conn:
        migrations.upgrade(conn, fresh_database.roles, "0001")
    with fresh_database.admin() as conn:
        assert migrations.current(conn) == {"0001"}

    before, after = fresh_database.migrate()

    assert before == {"0001"}
    assert after == migrations.heads()


def test_monthly_partitions_exist_around_the_current_month(fresh_database: Database):
    fresh_database.migrate()
    with fresh_database.admin() as conn:
        names = {r[0] for r in conn.execute(sa.text(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = 'executions'::regclass"))}
        this_month = conn.execute(sa.text("SELECT to_char(now(), '\"y\"YYYY\"m\"MM')")).scalar()
    assert f"executions_{this_month}" in names
    assert "executions_default" in names
