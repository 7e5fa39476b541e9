-- Overview metrics; executions are placed in time by the engine-reported started_at (created_at is
-- the recording time). Every filter is a bound parameter.

-- name: kpis
SELECT
  (SELECT count(*) FROM event_state WHERE received_at >= :since AND received_at < :until) AS events,
  count(*) AS executions,
  count(*) FILTER (WHERE s.status = 'completed') AS completed,
  count(*) FILTER (WHERE s.status IN ('failed', 'timed_out')) AS failed,
  count(*) FILTER (WHERE s.status IN ('completed', 'failed', 'timed_out', 'cancelled')) AS finished,
  percentile_cont(0.95) WITHIN GROUP (ORDER BY s.duration_ms)
    FILTER (WHERE s.duration_ms IS NOT NULL) AS p95_ms,
  (SELECT count(*) FROM event_state WHERE status = 'dead_lettered') AS dead_lettered
FROM execution_state s
WHERE s.started_at >= :since AND s.started_at < :until
  AND (CAST(:workflow AS text) IS NULL OR s.workflow_id = :workflow);

-- name: hourly
SELECT date_trunc('hour', s.started_at) AS hour,
       count(*) AS executions,
       count(*) FILTER (WHERE s.status IN ('failed', 'timed_out')) AS failed
FROM execution_state s
WHERE s.started_at >= :since AND s.started_at < :until
  AND (CAST(:workflow AS text) IS NULL OR s.workflow_id = :workflow)
GROUP BY 1 ORDER BY 1;

-- name: daily
SELECT date_trunc('day', s.started_at) AS day,
       count(*) AS executions,
       count(*) FILTER (WHERE s.status IN ('failed', 'timed_out')) AS failed
FROM execution_state s
WHERE s.started_at >= :since AND s.started_at < :until
  AND (CAST(:workflow AS text) IS NULL OR s.workflow_id = :workflow)
GROUP BY 1 ORDER BY 1;

-- name: status_counts
SELECT s.status, count(*) AS count
FROM execution_state s
WHERE s.started_at >= :since AND s.started_at < :until
  AND (CAST(:workflow AS text) IS NULL OR s.workflow_id = :workflow)
GROUP BY 1 ORDER BY 2 DESC;

-- name: failures_by_event_type
-- Executions without an event (schedules, manual runs, engine reports) are labelled by trigger.
SELECT COALESCE(ev.event_type, '(' || s.trigger_source || ')') AS event_type, count(*) AS failures
FROM execution_state s LEFT JOIN event_state ev ON ev.event_id = s.event_id
WHERE s.started_at >= :since AND s.started_at < :until AND s.status IN ('failed', 'timed_out')
GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT :limit;

-- name: failures_by_workflow
SELECT s.workflow_id, count(*) AS failures,
       count(*)::float / NULLIF((SELECT count(*) FROM execution_state a WHERE a.workflow_id = s.workflow_id
                                 AND a.started_at >= :since AND a.started_at < :until), 0) AS rate
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
SELECT s.workflow_id, count(*) AS executions,
       count(*) FILTER (WHERE s.status IN ('failed', 'timed_out')) AS failed,
       max(s.started_at) AS last_run
FROM execution_state s
WHERE s.started_at >= :since AND s.started_at < :until
GROUP BY 1 ORDER BY 1;
