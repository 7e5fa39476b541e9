"""Executions are listed newest first by recording time: give that order an index, overall and per workflow.

Why: GET /api/v1/executions pages by (created_at, execution_id) descending, but execution_state had
indexes on started_at only. With no filter PostgreSQL read every execution and sorted them (20 ms at
100,000 executions, growing with the ledger); with a workflow it read all of that workflow's runs to
keep a day of them (10 ms at 12,500 runs). Both now read the 50 rows they return.

Revision ID: 0019
Revises: 0018
"""

from migrations import run_sql as _sql

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None

UP = """
SET ROLE "@owner@";
CREATE INDEX IF NOT EXISTS execution_state_created_idx ON execution_state (created_at DESC, execution_id DESC);
CREATE INDEX IF NOT EXISTS execution_state_workflow_created_idx
  ON execution_state (workflow_id, created_at DESC, execution_id DESC);
RESET ROLE;
"""

DOWN = """
SET ROLE "@owner@";
DROP INDEX IF EXISTS execution_state_workflow_created_idx;
DROP INDEX IF EXISTS execution_state_created_idx;
RESET ROLE;
"""


def upgrade() -> None:
    _sql(UP)


def downgrade() -> None:
    _sql(DOWN)
