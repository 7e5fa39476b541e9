-- Reads behind the execution page: step windows by seq, per-step p95 of recent runs, replay pairs.

-- name: step_stats
SELECT count(DISTINCT seq) AS steps, count(*) AS attempts,
       min(seq) FILTER (WHERE status IN ('failed', 'timed_out')) AS first_failed_seq
FROM steps WHERE execution_id = :e;

-- name: failures
-- The final attempt of each step that ended failed or timed out: what the page headline names. position is the
-- step's index among the distinct seqs (window functions run before DISTINCT ON), what windows are offset by.
SELECT * FROM (
  SELECT DISTINCT ON (seq) step_id, seq, step_name, attempt, status, error_message, response_status,
         external_request_id, dense_rank() OVER (ORDER BY seq) - 1 AS position
  FROM steps WHERE execution_id = :e
  ORDER BY seq, attempt DESC
) final WHERE status IN ('failed', 'timed_out') ORDER BY seq LIMIT 50;

-- name: locate
SELECT st.seq, st.attempt,
       (SELECT count(DISTINCT seq) FROM steps WHERE execution_id = :e AND seq < st.seq) AS position
FROM steps st WHERE st.step_id = :s AND st.execution_id = :e LIMIT 1;

-- name: overview
-- The minimap: consecutive steps (final attempts) folded into at most :buckets runs of equal length.
WITH finals AS (
  SELECT DISTINCT ON (seq) seq, attempt, status FROM steps WHERE execution_id = :e ORDER BY seq, attempt DESC
), ranked AS (
  SELECT attempt, status, row_number() OVER (ORDER BY seq) - 1 AS position, count(*) OVER () AS total FROM finals
)
SELECT position * :buckets / total AS bucket, min(position) AS first, max(position) AS last, count(*) AS steps,
       count(*) FILTER (WHERE status IN ('failed', 'timed_out')) AS failed,
       count(*) FILTER (WHERE attempt > 1 AND status NOT IN ('failed', 'timed_out', 'skipped', 'cancelled'))
         AS retried,
       count(*) FILTER (WHERE status IN ('skipped', 'cancelled')) AS inactive
FROM ranked GROUP BY 1 ORDER BY 1;

-- name: window
WITH chosen AS (
  SELECT DISTINCT seq FROM steps WHERE execution_id = :e ORDER BY seq OFFSET :offset LIMIT :size
)
SELECT st.step_id, st.seq, st.step_name, st.step_type, st.attempt, st.status, st.started_at, st.completed_at,
       st.duration_ms, st.wait_ms, st.error_message, st.response_status, st.external_request_id, st.span_id,
       st.parent_span_id, st.idempotency_key, st.reused_from_execution, st.input_payload_id, st.output_payload_id,
       p.sha256 AS output_hash
FROM steps st
LEFT JOIN payloads p ON p.payload_id = st.output_payload_id AND p.execution_id = st.execution_id
WHERE st.execution_id = :e AND st.seq IN (SELECT seq FROM chosen)
ORDER BY st.seq, st.attempt;

-- name: p95
-- Completed attempts of the workflow's most recent runs before this one (index on workflow_id, started_at).
WITH recent AS (
  SELECT execution_id FROM execution_state
  WHERE workflow_id = :workflow AND started_at < :before AND status = 'completed'
  ORDER BY started_at DESC LIMIT :runs
)
SELECT st.step_name, percentile_cont(0.95) WITHIN GROUP (ORDER BY st.duration_ms) AS p95_ms
FROM steps st JOIN recent r ON r.execution_id = st.execution_id
WHERE st.status = 'completed' AND st.duration_ms IS NOT NULL
GROUP BY st.step_name;

-- name: step
SELECT st.step_id, st.execution_id, st.seq, st.step_name, st.step_type, st.attempt, st.status, st.started_at,
       st.completed_at, st.duration_ms, st.wait_ms, st.error_message, st.response_status, st.external_request_id,
       st.span_id, st.parent_span_id, st.idempotency_key, st.reused_from_execution, st.input_payload_id,
       st.output_payload_id
FROM steps st WHERE st.step_id = :s AND st.execution_id = :e
ORDER BY st.attempt LIMIT 1;

-- name: payload_meta
SELECT payload_id, kind, size_bytes, stored_bytes, sha256, uri, codec, policy
FROM payloads WHERE payload_id = :p AND execution_id = :e;

-- name: logs
SELECT "timestamp", level, message, step_id FROM execution_logs WHERE execution_id = :e
ORDER BY "timestamp", id LIMIT :limit;

-- name: replays_of
SELECT execution_id, status, started_at FROM workflow_executions WHERE replay_of = :e ORDER BY started_at DESC;
