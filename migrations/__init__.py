"""Versioned schema, roles and grants; applied with alembic on an admin connection."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection

HERE = Path(__file__).parent


@dataclass(frozen=True)
class Roles:
    """Names of the four database roles the migrations create and grant."""

    owner: str = "flowledger_owner"
    writer: str = "flowledger_writer"
    reader: str = "flowledger_reader"
    maintainer: str = "flowledger_maintainer"


def _config(connection: Connection | None = None, roles: Roles | None = None) -> Config:
    cfg = Config(str(HERE / "alembic.ini"))
    cfg.set_main_option("script_location", str(HERE))
    cfg.attributes["connection"] = connection
    cfg.attributes["roles"] = roles or Roles()
    return cfg


def heads() -> set[str]:
    """The revisions a fully migrated database is at."""
    return set(ScriptDirectory.from_config(_config()).get_heads())


def current(connection: Connection) -> set[str]:
    """The revisions the database is at (empty when never migrated)."""
    return set(MigrationContext.configure(connection).get_current_heads())


def upgrade(connection: Connection, roles: Roles, target: str = "heads") -> None:
    """Apply pending revisions up to target; a no-op when already there."""
    command.upgrade(_config(connection, roles), target)


def downgrade(connection: Connection, roles: Roles, target: str) -> None:
    """Step the schema back to target (used by the down-and-up test)."""
    command.downgrade(_config(connection, roles), target)


def roles_in_context() -> Roles:
    """Role names for the revision being run."""
    from alembic import context

    return context.config.attributes["roles"]


def run_sql(block: str) -> None:
    """Run a block of SQL in the current revision, with @owner@/@writer@/@reader@/@maintainer@ replaced.

    The raw driver call matters: without parameters psycopg leaves % alone and runs many statements.
    """
    from alembic import op

    roles = roles_in_context()
    for token, name in (("@owner@", roles.owner), ("@writer@", roles.writer),
                        ("@reader@", roles.reader), ("@maintainer@", roles.maintainer)):
        block = block.replace(token, name)
    op.get_bind().connection.driver_connection.execute(block)
