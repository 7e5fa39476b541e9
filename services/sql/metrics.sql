-- Overview metrics. Counts and rates read the maintained hourly rollup over the whole UTC hours
-- that cover the period (:since_hour, :until_hour): a run counts in the hour it started (running)
-- and in the hour it finished (its outcome), by engine-reported time. p95 and the lists of failures
-- read the finished-runs rollup, by the hour each run finished. Every filter is a bound parameter.

-- name: outcomes
-- Runs per UTC hour and status from the maintained hourly rollup (flowledger_hourly_outcomes: rolled
-- hours plus the live tail): the KPIs, both rate charts and the donut are all summed from this one read.
SELECT o.hour, o.status, sum(o.executions)::bigint AS executions
FROM flowledger_hourly_outcomes(:since_hour, :until_hour, CAST(:statuses AS text[]), CAST(:workflow AS text)) o
GROUP BY 1, 2 ORDER BY 1, 2;

-- name: kpis
-- Events received in the whole hours covering the period (rollup plus live tail, migration 0022), and
-- the dead-letter queue now (few rows, through event_state_status_idx).
SELECT flowledger_events_received(:since_hour, :until_hour) AS events,
  (SELECT count(*) FROM event_state WHERE status = 'dead_lettered') AS dead_lettered;

-- name: p95
-- From the finished runs' duration buckets (flowledger_duration_histogram, migration 0021): the bucket
-- the 95th percentile falls in, at its geometric middle, so within 5% of the exact value.
WITH ranked AS (
  SELECT h.bucket, sum(h.executions) OVER (ORDER BY h.bucket) AS below, sum(h.executions) OVER () AS total
  FROM flowledger_duration_histogram(:since_hour, :until_hour, CAST(:workflow AS text)) h
)
SELECT CASE WHEN min(bucket) = 0 THEN 0 ELSE round(power(1.1, min(bucket) - 0.5)) END AS p95_ms
FROM ranked WHERE below >= 0.95 * total;

-- name: open_runs
-- Runs started in the period that have not finished yet (few, so the status index answers).
SELECT s.status, count(*) AS count FROM execution_state s
WHERE s.status IN ('pending', 'running') AND s.started_at >= :since AND s.started_at < :until
  AND (CAST(:workflow AS text) IS NULL OR s.workflow_id = :workflow)
GROUP BY 1;

-- name: failures_by_event_type
-- Failure lists come from the finished-runs rollup (0021), by the hour each run failed, like the rate
-- charts. Executions without an event (schedules, manual runs, engine reports) are labelled by trigger.
SELECT f.event_type, sum(f.failures)::bigint AS failures
FROM flowledger_failure_counts(:since_hour, :until_hour) f
GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT :limit;

-- name: failures_by_workflow
-- The rate's denominator is the runs the workflow started in the period, from the outcomes rollup.
SELECT f.workflow_id, sum(f.failures)::bigint AS failures,
       sum(f.failures)::float / NULLIF((SELECT sum(o.executions) FROM flowledger_hourly_outcomes(
         :since_hour, :until_hour, ARRAY['running'], f.workflow_id) o), 0) AS rate
FROM flowledger_failure_counts(:since_hour, :until_hour) f
GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT :limit;

-- name: failures_by_error
-- Ids, e-mail addresses, timestamps and retry hints were blanked when the run was rolled up
-- (flowledger_error_class), so one cause is one row.
SELECT f.error, sum(f.failures)::bigint AS failures
FROM flowledger_failure_counts(:since_hour, :until_hour) f
GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT :limit;

-- name: workflow_health
-- Runs finished and failed per workflow in the period (rollup); the last start from the
-- (workflow_id, started_at) index.
SELECT o.workflow_id,
       COALESCE(sum(o.executions) FILTER (WHERE o.status <> 'running'), 0)::bigint AS executions,
       COALESCE(sum(o.executions) FILTER (WHERE o.status IN ('failed', 'timed_out')), 0)::bigint AS failed,
       (SELECT max(s.started_at) FROM execution_state s WHERE s.workflow_id = o.workflow_id
          AND s.started_at >= :since AND s.started_at < :until) AS last_run
FROM flowledger_hourly_outcomes(:since_hour, :until_hour) o
GROUP BY 1 ORDER BY 1;
