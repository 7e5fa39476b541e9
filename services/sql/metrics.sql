-- Overview metrics. Counts and rates read the maintained hourly rollup over the whole UTC hours
-- that cover the period (:since_hour, :until_hour): a run counts in the hour it started (running)
-- and in the hour it finished (its outcome), by engine-reported time. Lists of failures read the
-- failed runs themselves, placed by started_at. Every filter is a bound parameter.

-- name: outcomes
-- Runs per UTC hour and status from the maintained hourly rollup (flowledger_hourly_outcomes: rolled
-- hours plus the live tail): the KPIs, both rate charts and the donut are all summed from this one read.
SELECT o.hour, o.status, sum(o.executions)::bigint AS executions
FROM flowledger_hourly_outcomes(:since_hour, :until_hour, CAST(:statuses AS text[]), CAST(:workflow AS text)) o
GROUP BY 1, 2 ORDER BY 1, 2;

-- name: kpis
-- What the rollup does not hold. Durations are not rolled up: p95 reads the runs finished in the hours.
SELECT
  (SELECT count(*) FROM event_state WHERE received_at >= :since AND received_at < :until) AS events,
  (SELECT percentile_cont(0.95) WITHIN GROUP (ORDER BY s.duration_ms) FROM execution_state s
   WHERE s.completed_at >= :since_hour AND s.completed_at < :until_hour AND s.duration_ms IS NOT NULL
     AND (CAST(:workflow AS text) IS NULL OR s.workflow_id = :workflow)) AS p95_ms,
  (SELECT count(*) FROM event_state WHERE status = 'dead_lettered') AS dead_lettered;

-- name: open_runs
-- Runs started in the period that have not finished yet (few, so the status index answers).
SELECT s.status, count(*) AS count FROM execution_state s
WHERE s.status IN ('pending', 'running') AND s.started_at >= :since AND s.started_at < :until
  AND (CAST(:workflow AS text) IS NULL OR s.workflow_id = :workflow)
GROUP BY 1;

-- name: failures_by_event_type
-- Executions without an event (schedules, manual runs, engine reports) are labelled by trigger.
SELECT COALESCE(ev.event_type, '(' || s.trigger_source || ')') AS event_type, count(*) AS failures
FROM execution_state s LEFT JOIN event_state ev ON ev.event_id = s.event_id
WHERE s.started_at >= :since AND s.started_at < :until AND s.status IN ('failed', 'timed_out')
GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT :limit;

-- name: failures_by_workflow
-- The rate's denominator is the runs the workflow started in the period, from the rollup.
SELECT s.workflow_id, count(*) AS failures,
       count(*)::float / NULLIF((SELECT sum(o.executions) FROM flowledger_hourly_outcomes(
         :since_hour, :until_hour, ARRAY['running'], s.workflow_id) o), 0) AS rate
FROM execution_state s
WHERE s.started_at >= :since AND s.started_at < :until AND s.status IN ('failed', 'timed_out')
GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT :limit;

-- name: failures_by_error
-- Ids, e-mail addresses, timestamps and retry hints vary per run; blank them so one cause is one row.
SELECT COALESCE(s.failed_step || ': ', '') || left(regexp_replace(COALESCE(s.error_message, 'no error message'),
         '(C|ORD|INV|D)-[0-9-]+|[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+|[0-9]{4}-[0-9]{2}-[0-9]{2}T[^ ]*|[0-9]+s\y',
         '…', 'g'), 140) AS error,
       count(*) AS failures
FROM execution_state s
WHERE s.started_at >= :since AND s.started_at < :until AND s.status IN ('failed', 'timed_out')
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
