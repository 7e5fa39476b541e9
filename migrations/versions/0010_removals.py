"""Authorised removals: the ledger's record of rows removed on purpose (force-delete, retention, erasure).

Why: verify must tell an authorised removal from tampering. Each removal is an insert-only fact
written by the maintainer in the same transaction as the DELETE it authorises; nobody may
change or delete it. Also a per-user permission list, so force-delete can require
`executions.force-delete` on top of the admin role.

Revision ID: 0010
Revises: 0006
"""

from migrations import run_sql as _sql

revision = "0010"
down_revision = "0006"
branch_labels = None
depends_on = None

UP = """
SET ROLE "@owner@";
CREATE TABLE ledger_removals (
  id bigserial PRIMARY KEY,
  at timestamptz NOT NULL DEFAULT now(),
  kind text NOT NULL CHECK (kind IN ('force_delete', 'retention', 'erasure')),
  actor text NOT NULL,
  reason text,
  table_name text NOT NULL,
  row_key text NOT NULL,
  execution_id uuid
);
CREATE INDEX ledger_removals_key_idx ON ledger_removals (table_name, row_key);
CREATE INDEX ledger_removals_execution_idx ON ledger_removals (execution_id);
REVOKE INSERT ON ledger_removals FROM "@writer@";
REVOKE DELETE ON ledger_removals FROM "@maintainer@";
GRANT INSERT ON ledger_removals TO "@maintainer@";
ALTER TABLE users ADD COLUMN permissions text[] NOT NULL DEFAULT '{}';
GRANT UPDATE (permissions) ON users TO "@writer@";
RESET ROLE;
"""

DOWN = """
SET ROLE "@owner@";
ALTER TABLE users DROP COLUMN IF EXISTS permissions;
DROP TABLE IF EXISTS ledger_removals;
RESET ROLE;
"""


def upgrade() -> None:
    _sql(UP)


def downgrade() -> None:
    _sql(DOWN)
