"""The overview's p95 duration and failure lists come from a maintained rollup too.

Why: the hourly outcomes rollup (0009) answers the counts and rates, but the p95 duration still
read every run finished in the period (percentile_cont over 100,000 runs: 32 ms at 100k, growing
with the ledger), and the three failure lists grouped every failed run of the period, one of them
through a regular expression (23-45 ms at 100k). An overview at 10x the volume took over a second.

Two rollups, per UTC hour of the outcome and workflow:
- execution_hourly_durations: finished runs per duration bucket. Bucket b >= 1 holds durations in
  [1.1^(b-1), 1.1^b) ms, 0 those under 1 ms. p95 is the bucket the 95th percentile falls in, at its
  geometric middle: within 5% of the exact value.
- execution_hourly_failures: failed and timed-out runs per event type (or trigger, for runs without
  an event) and error class (flowledger_error_class: ids, e-mail addresses, timestamps and retry
  hints blanked, so one cause is one row).

The rollup job folds both in the same transaction and up to the same watermark as the outcomes
(a run has one terminal transition); flowledger_duration_histogram() and
flowledger_failure_counts() add the live tail, so the answers are exact (p95 up to its bucket).
Runs the outcomes rollup already holds are folded here once, by this migration.

Revision ID: 0021
Revises: 0020
"""

from migrations import run_sql as _sql

revision = "0021"
down_revision = "0020"
branch_labels = None
depends_on = None

UP = """
SET ROLE "@owner@";
CREATE OR REPLACE FUNCTION flowledger_error_class(failed_step text, error_message text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT COALESCE(failed_step || ': ', '') || left(regexp_replace(COALESCE(error_message, 'no error message'),
           '(C|ORD|INV|D)-[0-9-]+|[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+|[0-9]{4}-[0-9]{2}-[0-9]{2}T[^ ]*|[0-9]+s\\y',
           '…', 'g'), 140)
$$;
CREATE OR REPLACE FUNCTION flowledger_duration_bucket(ms bigint) RETURNS int
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT CASE WHEN ms < 1 THEN 0 ELSE floor(ln(ms) / ln(1.1))::int + 1 END
$$;
CREATE TABLE IF NOT EXISTS execution_hourly_durations (
  hour timestamptz NOT NULL,
  workflow_id text NOT NULL,
  bucket int NOT NULL,
  executions bigint NOT NULL,
  PRIMARY KEY (hour, workflow_id, bucket)
);
CREATE TABLE IF NOT EXISTS execution_hourly_failures (
  hour timestamptz NOT NULL,
  workflow_id text NOT NULL,
  event_type text NOT NULL,
  error text NOT NULL,
  executions bigint NOT NULL,
  PRIMARY KEY (hour, workflow_id, event_type, error)
);
GRANT UPDATE ON execution_hourly_durations, execution_hourly_failures TO "@writer@";
-- How far the rollup job has folded (rows recorded before it are in the rollups); -infinity before its first run.
CREATE OR REPLACE FUNCTION flowledger_rollup_watermark() RETURNS timestamptz
LANGUAGE sql STABLE SET search_path = public, pg_temp AS $$
  SELECT COALESCE((SELECT w.recorded_before FROM rollup_watermarks w WHERE w.rollup = 'execution_hourly'),
                  '-infinity'::timestamptz)
$$;
-- One row per outcome (terminal transition) with what the overview groups it by: the rollup job's
-- fold and the readers' live tail both read this.
CREATE OR REPLACE VIEW flowledger_finished_runs AS
SELECT t.recorded_at, t.at, s.workflow_id, t.status,
       date_trunc('hour', t.at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' AS hour,
       flowledger_duration_bucket(s.duration_ms) AS bucket,
       CASE WHEN t.status IN ('failed', 'timed_out')
            THEN COALESCE(ev.event_type, '(' || s.trigger_source || ')') END AS event_type,
       CASE WHEN t.status IN ('failed', 'timed_out')
            THEN flowledger_error_class(s.failed_step, s.error_message) END AS error
FROM execution_transitions t
JOIN execution_state s ON s.execution_id = t.execution_id
LEFT JOIN event_state ev ON ev.event_id = s.event_id
WHERE t.status IN ('completed', 'failed', 'timed_out', 'cancelled');
-- Runs the outcomes rollup already holds (recorded before its watermark), folded here once.
INSERT INTO execution_hourly_durations (hour, workflow_id, bucket, executions)
SELECT f.hour, f.workflow_id, f.bucket, count(*) FROM flowledger_finished_runs f
WHERE f.bucket IS NOT NULL AND f.recorded_at < (SELECT flowledger_rollup_watermark())
GROUP BY 1, 2, 3 ON CONFLICT DO NOTHING;
INSERT INTO execution_hourly_failures (hour, workflow_id, event_type, error, executions)
SELECT f.hour, f.workflow_id, f.event_type, f.error, count(*) FROM flowledger_finished_runs f
WHERE f.error IS NOT NULL AND f.recorded_at < (SELECT flowledger_rollup_watermark())
GROUP BY 1, 2, 3, 4 ON CONFLICT DO NOTHING;
-- The readers: rolled hours plus the runs recorded after the watermark, in the caller's snapshot, each
-- already summed over the hours (as 0018's flowledger_hourly_outcomes; EXECUTE plans the tail with the
-- real watermark, so the BRIN index on recorded_at is used).
CREATE OR REPLACE FUNCTION flowledger_duration_histogram(since timestamptz, until timestamptz,
                                                         workflow text DEFAULT NULL)
RETURNS TABLE (bucket int, executions bigint)
LANGUAGE plpgsql STABLE SET search_path = public, pg_temp AS $$
DECLARE
  mark timestamptz := flowledger_rollup_watermark();
BEGIN
  RETURN QUERY EXECUTE $q$
    SELECT x.bucket, sum(x.n)::bigint FROM (
      SELECT r.bucket, r.executions AS n FROM execution_hourly_durations r
      WHERE r.hour >= $2 AND r.hour < $3 AND ($4 IS NULL OR r.workflow_id = $4)
      UNION ALL
      SELECT f.bucket, 1 FROM flowledger_finished_runs f
      WHERE f.recorded_at >= $1 AND f.at >= $2 AND f.at < $3 AND f.bucket IS NOT NULL
        AND ($4 IS NULL OR f.workflow_id = $4)
    ) x GROUP BY 1$q$ USING mark, since, until, workflow;
END $$;
CREATE OR REPLACE FUNCTION flowledger_failure_counts(since timestamptz, until timestamptz)
RETURNS TABLE (workflow_id text, event_type text, error text, failures bigint)
LANGUAGE plpgsql STABLE SET search_path = public, pg_temp AS $$
DECLARE
  mark timestamptz := flowledger_rollup_watermark();
BEGIN
  RETURN QUERY EXECUTE $q$
    SELECT x.workflow_id, x.event_type, x.error, sum(x.n)::bigint FROM (
      SELECT r.workflow_id, r.event_type, r.error, r.executions AS n FROM execution_hourly_failures r
      WHERE r.hour >= $2 AND r.hour < $3
      UNION ALL
      SELECT f.workflow_id, f.event_type, f.error, 1 FROM flowledger_finished_runs f
      WHERE f.recorded_at >= $1 AND f.at >= $2 AND f.at < $3 AND f.error IS NOT NULL
    ) x GROUP BY 1, 2, 3$q$ USING mark, since, until;
END $$;
RESET ROLE;
"""

DOWN = """
SET ROLE "@owner@";
DROP FUNCTION IF EXISTS flowledger_failure_counts(timestamptz, timestamptz);
DROP FUNCTION IF EXISTS flowledger_duration_histogram(timestamptz, timestamptz, text);
DROP VIEW IF EXISTS flowledger_finished_runs;
DROP TABLE IF EXISTS execution_hourly_failures, execution_hourly_durations;
DROP FUNCTION IF EXISTS flowledger_rollup_watermark();
DROP FUNCTION IF EXISTS flowledger_duration_bucket(bigint);
DROP FUNCTION IF EXISTS flowledger_error_class(text, text);
RESET ROLE;
"""


def upgrade() -> None:
    _sql(UP)


def downgrade() -> None:
    _sql(DOWN)
