"""Maintained rollups: execution outcomes per workflow and hour, fed from execution_transitions.

Why: the dashboard's "failure rate per hour over 30 days" and "status counts for the last 24 h"
are a full GROUP BY over every execution (about a second at 1M rows). A scheduled job folds
transitions into one row per (workflow, hour, status) and remembers how far it got as a
recorded_at watermark; readers add the transitions after the watermark (the live tail) so the
answer is exact without a scan. Ingestion never touches these tables (no trigger, no hot row):
only the job writes them, so it gets UPDATE on them like the other derived, mutable tables.
flowledger_hourly_outcomes() reads rolled rows plus tail in one snapshot. A BRIN index on
execution_transitions.recorded_at keeps the tail cheap at almost no insert cost.

Revision ID: 0009
Revises: 0001
"""

from migrations import run_sql as _sql

revision = "0009"
down_revision = "0001"
branch_labels = None
depends_on = None

UPGRADE = """
SET ROLE "@owner@";
CREATE TABLE IF NOT EXISTS execution_hourly_stats (
  workflow_id text NOT NULL,
  hour timestamptz NOT NULL,
  status text NOT NULL,
  executions bigint NOT NULL,
  PRIMARY KEY (hour, workflow_id, status)
);
CREATE TABLE IF NOT EXISTS rollup_watermarks (
  rollup text PRIMARY KEY,
  recorded_before timestamptz NOT NULL,
  updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS execution_transitions_recorded_brin
  ON execution_transitions USING brin (recorded_at) WITH (pages_per_range = 16);
GRANT UPDATE ON execution_hourly_stats, rollup_watermarks TO "@writer@";
-- STABLE: every statement inside sees the caller's snapshot, so the watermark, the rolled rows and
-- the tail are read consistently even while the job commits; EXECUTE plans the tail with the real
-- watermark value, so the BRIN index is used instead of a generic full-scan plan.
CREATE OR REPLACE FUNCTION flowledger_hourly_outcomes(since timestamptz, until timestamptz)
RETURNS TABLE (workflow_id text, hour timestamptz, status text, executions bigint)
LANGUAGE plpgsql STABLE SET search_path = public, pg_temp AS $$
DECLARE
  mark timestamptz := COALESCE((SELECT w.recorded_before FROM rollup_watermarks w
                                WHERE w.rollup = 'execution_hourly'), '-infinity'::timestamptz);
BEGIN
  RETURN QUERY EXECUTE $q$
    SELECT x.workflow_id, x.hour, x.status, sum(x.n)::bigint FROM (
      SELECT r.workflow_id, r.hour, r.status, r.executions AS n FROM execution_hourly_stats r
      WHERE r.hour >= $2 AND r.hour < $3
      UNION ALL
      SELECT s.workflow_id, date_trunc('hour', t.at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC', t.status, 1
      FROM execution_transitions t JOIN execution_state s ON s.execution_id = t.execution_id
      WHERE t.recorded_at >= $1 AND t.at >= $2 AND t.at < $3
    ) x GROUP BY 1, 2, 3$q$ USING mark, since, until;
END $$;
RESET ROLE;
"""

DOWNGRADE = """
SET ROLE "@owner@";
DROP FUNCTION IF EXISTS flowledger_hourly_outcomes(timestamptz, timestamptz);
DROP INDEX IF EXISTS execution_transitions_recorded_brin;
DROP TABLE IF EXISTS rollup_watermarks, execution_hourly_stats;
RESET ROLE;
"""


def upgrade() -> None:
    _sql(UPGRADE)


def downgrade() -> None:
    _sql(DOWNGRADE)
