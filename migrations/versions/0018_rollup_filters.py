"""The hourly rollup reader filters by status and workflow before it adds anything up.

Why: the overview's failure-rate charts, KPIs and status counts now read the maintained rollup
instead of grouping every execution of the period (a 30-day overview grouped every run; at 1M
runs that is seconds). Those readers want a few statuses, often for one workflow; filtering
after the function had summed every status of every workflow did four times the work. Both
branches (rolled rows and live tail) now apply the filters, and a NULL filter means "all".

Revision ID: 0018
Revises: 0017
"""

from migrations import run_sql as _sql

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None

UP = """
SET ROLE "@owner@";
DROP FUNCTION IF EXISTS flowledger_hourly_outcomes(timestamptz, timestamptz);
-- STABLE: every statement inside sees the caller's snapshot, so the watermark, the rolled rows and
-- the tail are read consistently even while the job commits; EXECUTE plans the tail with the real
-- watermark value, so the BRIN index is used instead of a generic full-scan plan.
CREATE OR REPLACE FUNCTION flowledger_hourly_outcomes(since timestamptz, until timestamptz,
                                                      statuses text[] DEFAULT NULL, workflow text DEFAULT NULL)
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
        AND ($4 IS NULL OR r.status = ANY($4)) AND ($5 IS NULL OR r.workflow_id = $5)
      UNION ALL
      SELECT s.workflow_id, date_trunc('hour', t.at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC', t.status, 1
      FROM execution_transitions t JOIN execution_state s ON s.execution_id = t.execution_id
      WHERE t.recorded_at >= $1 AND t.at >= $2 AND t.at < $3
        AND ($4 IS NULL OR t.status = ANY($4)) AND ($5 IS NULL OR s.workflow_id = $5)
    ) x GROUP BY 1, 2, 3$q$ USING mark, since, until, statuses, workflow;
END $$;
RESET ROLE;
"""

DOWN = """
SET ROLE "@owner@";
DROP FUNCTION IF EXISTS flowledger_hourly_outcomes(timestamptz, timestamptz, text[], text);
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


def upgrade() -> None:
    _sql(UP)


def downgrade() -> None:
    _sql(DOWN)
