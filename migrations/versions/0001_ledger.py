"""The ledger: roles, insert-only tables partitioned by month, state projections kept by triggers.

Why: every later feature reads or appends to these tables. Immutability is a property of the
grants made here (the writer may INSERT and SELECT ledger tables, nothing else), and lifecycle
state is derived by SECURITY DEFINER triggers from appended facts, so no application code ever
issues an UPDATE on the ledger.

Revision ID: 0001
Revises:
"""

from migrations import run_sql as _sql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

PARTITIONED = {
    "events": "created_at",
    "executions": "created_at",
    "steps": "created_at",
    "payloads": "created_at",
    "execution_audit_events": "timestamp",
    "execution_logs": "timestamp",
}

ROLES = """
DO $$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '@owner@') THEN
    CREATE ROLE "@owner@" NOLOGIN;
  END IF;
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '@writer@') THEN
    CREATE ROLE "@writer@" LOGIN;
  END IF;
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '@reader@') THEN
    CREATE ROLE "@reader@" LOGIN;
  END IF;
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '@maintainer@') THEN
    CREATE ROLE "@maintainer@" LOGIN;
  END IF;
  IF NOT (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN
    EXECUTE format('GRANT %I TO %I', '@owner@', current_user);
  END IF;
END $$;
CREATE EXTENSION IF NOT EXISTS pg_trgm;
GRANT CREATE, USAGE ON SCHEMA public TO "@owner@";
GRANT USAGE ON SCHEMA public TO "@writer@", "@reader@", "@maintainer@";
DO $$ BEGIN
  EXECUTE format('GRANT CONNECT ON DATABASE %I TO %I, %I, %I', current_database(),
                 '@writer@', '@reader@', '@maintainer@');
END $$;
GRANT SELECT ON alembic_version TO "@writer@", "@reader@", "@maintainer@";
SET ROLE "@owner@";
ALTER DEFAULT PRIVILEGES FOR ROLE "@owner@" IN SCHEMA public
  GRANT SELECT, INSERT ON TABLES TO "@writer@";
ALTER DEFAULT PRIVILEGES FOR ROLE "@owner@" IN SCHEMA public GRANT SELECT ON TABLES TO "@reader@";
ALTER DEFAULT PRIVILEGES FOR ROLE "@owner@" IN SCHEMA public
  GRANT SELECT, DELETE ON TABLES TO "@maintainer@";
ALTER DEFAULT PRIVILEGES FOR ROLE "@owner@" IN SCHEMA public
  GRANT USAGE, SELECT ON SEQUENCES TO "@writer@", "@maintainer@";
"""

TABLES = """
CREATE TABLE workflows (
  workflow_id text PRIMARY KEY,
  created_at timestamptz NOT NULL DEFAULT now(),
  created_by text
);
CREATE TABLE workflow_versions (
  workflow_id text NOT NULL REFERENCES workflows,
  version int NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  created_by text,
  change_note text,
  definition jsonb NOT NULL,
  retention_days int CHECK (retention_days IS NULL OR retention_days BETWEEN 7 AND 3650),
  retain_on_failure boolean NOT NULL DEFAULT false,
  legal_hold boolean NOT NULL DEFAULT false,
  masking jsonb NOT NULL DEFAULT '{}'::jsonb,
  payload_policy jsonb NOT NULL DEFAULT '{}'::jsonb,
  PRIMARY KEY (workflow_id, version)
);

CREATE TABLE events (
  event_id uuid NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  received_at timestamptz NOT NULL DEFAULT now(),
  source_system text NOT NULL,
  event_type text,
  content_type text,
  raw_body bytea NOT NULL,
  payload jsonb,
  payload_hash text NOT NULL,
  size_bytes int NOT NULL,
  idempotency_key text,
  headers jsonb NOT NULL DEFAULT '{}'::jsonb,
  traceparent text,
  trace_id text,
  rejected_reason text,
  replay_of uuid,
  PRIMARY KEY (event_id, created_at)
) PARTITION BY RANGE (created_at);
CREATE INDEX events_id_idx ON events (event_id);
CREATE INDEX events_source_idx ON events (source_system, received_at DESC);
CREATE INDEX events_type_idx ON events (event_type, received_at DESC);
CREATE INDEX events_payload_gin ON events USING gin (payload jsonb_path_ops);

CREATE TABLE event_idempotency (
  source_system text NOT NULL,
  idempotency_key text NOT NULL,
  event_id uuid NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (source_system, idempotency_key)
);
CREATE TABLE event_status_history (
  id bigserial PRIMARY KEY,
  event_id uuid NOT NULL,
  status text NOT NULL CHECK (status IN
    ('received', 'routed', 'processed', 'failed', 'dead_lettered', 'rejected')),
  at timestamptz NOT NULL DEFAULT now(),
  detail jsonb NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX event_status_history_event_idx ON event_status_history (event_id, id);
CREATE TABLE event_state (
  event_id uuid PRIMARY KEY,
  source_system text NOT NULL,
  event_type text,
  received_at timestamptz NOT NULL,
  status text NOT NULL,
  updated_at timestamptz NOT NULL
);
CREATE INDEX event_state_status_idx ON event_state (status, received_at DESC);
CREATE INDEX event_state_received_idx ON event_state (received_at DESC);
CREATE INDEX event_state_source_idx ON event_state (source_system, received_at DESC);

CREATE TABLE executions (
  execution_id uuid NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  workflow_id text NOT NULL,
  workflow_version int,
  event_id uuid,
  trigger_source text NOT NULL CHECK (trigger_source IN ('webhook', 'schedule', 'manual')),
  trigger_payload jsonb,
  trigger_payload_id uuid,
  trace_id char(32) NOT NULL,
  root_span_id char(16) NOT NULL,
  parent_span_id char(16),
  replay_of uuid,
  replay_id uuid,
  engine text NOT NULL DEFAULT 'flowledger',
  payload_policy text NOT NULL DEFAULT 'full',
  started_at timestamptz,
  attributes jsonb NOT NULL DEFAULT '{}'::jsonb,
  PRIMARY KEY (execution_id, created_at)
) PARTITION BY RANGE (created_at);
CREATE INDEX executions_id_idx ON executions (execution_id);
CREATE INDEX executions_workflow_created_idx ON executions (workflow_id, created_at DESC);
CREATE INDEX executions_trigger_payload_gin ON executions USING gin (trigger_payload jsonb_path_ops);
CREATE INDEX executions_event_idx ON executions (event_id);
CREATE INDEX executions_replay_of_idx ON executions (replay_of) WHERE replay_of IS NOT NULL;

CREATE TABLE execution_transitions (
  id bigserial PRIMARY KEY,
  execution_id uuid NOT NULL,
  seq int NOT NULL,
  status text NOT NULL CHECK (status IN
    ('pending', 'running', 'completed', 'failed', 'timed_out', 'cancelled')),
  at timestamptz NOT NULL,
  recorded_at timestamptz NOT NULL DEFAULT now(),
  reason text,
  error_message text,
  failed_step text,
  detail jsonb NOT NULL DEFAULT '{}'::jsonb,
  UNIQUE (execution_id, seq)
);
CREATE UNIQUE INDEX execution_transitions_one_outcome ON execution_transitions (execution_id)
  WHERE status IN ('completed', 'failed', 'timed_out', 'cancelled');

CREATE TABLE execution_state (
  execution_id uuid PRIMARY KEY,
  workflow_id text NOT NULL,
  workflow_version int,
  event_id uuid,
  trigger_source text NOT NULL,
  trace_id char(32) NOT NULL,
  created_at timestamptz NOT NULL,
  status text NOT NULL,
  started_at timestamptz,
  completed_at timestamptz,
  duration_ms bigint,
  error_message text,
  failed_step text,
  last_seq int NOT NULL DEFAULT 0,
  archived_uri text,
  updated_at timestamptz NOT NULL
);
CREATE INDEX execution_state_source_status_idx ON execution_state (trigger_source, status);
CREATE INDEX execution_state_workflow_started_idx ON execution_state (workflow_id, started_at DESC);
CREATE INDEX execution_state_status_started_idx ON execution_state (status, started_at DESC);
CREATE INDEX execution_state_started_idx ON execution_state (started_at DESC);
CREATE INDEX execution_state_completed_idx ON execution_state (completed_at);
CREATE INDEX execution_state_event_idx ON execution_state (event_id);

CREATE TABLE steps (
  step_id uuid NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  execution_id uuid NOT NULL,
  seq int NOT NULL,
  step_name text NOT NULL,
  step_type text NOT NULL CHECK (step_type IN ('action', 'condition', 'transform', 'wait')),
  attempt int NOT NULL DEFAULT 1 CHECK (attempt >= 1),
  status text NOT NULL CHECK (status IN
    ('running', 'completed', 'failed', 'timed_out', 'skipped', 'cancelled')),
  started_at timestamptz,
  completed_at timestamptz,
  duration_ms bigint,
  wait_ms bigint,
  input_payload_id uuid,
  output_payload_id uuid,
  error_message text,
  response_status int,
  external_request_id text,
  span_id char(16) NOT NULL,
  parent_span_id char(16),
  idempotency_key text,
  reused_from_execution uuid,
  search_text text,
  PRIMARY KEY (step_id, created_at)
) PARTITION BY RANGE (created_at);
CREATE INDEX steps_execution_idx ON steps (execution_id, seq, attempt);
CREATE INDEX steps_id_idx ON steps (step_id);

CREATE TABLE step_success_keys (
  idempotency_key text PRIMARY KEY,
  step_id uuid NOT NULL,
  execution_id uuid NOT NULL,
  output_payload_id uuid,
  created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE payloads (
  payload_id uuid NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  execution_id uuid NOT NULL,
  step_id uuid,
  kind text NOT NULL CHECK (kind IN ('trigger', 'input', 'output', 'response', 'context')),
  codec text NOT NULL,
  dict_id int,
  size_bytes bigint NOT NULL,
  stored_bytes bigint NOT NULL,
  sha256 text NOT NULL,
  data bytea,
  uri text,
  policy text NOT NULL DEFAULT 'full',
  summary jsonb,
  PRIMARY KEY (payload_id, created_at)
) PARTITION BY RANGE (created_at);
CREATE INDEX payloads_id_idx ON payloads (payload_id);
CREATE INDEX payloads_execution_idx ON payloads (execution_id);

CREATE TABLE payload_dictionaries (
  dict_id serial PRIMARY KEY,
  workflow_id text NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  sample_count int NOT NULL,
  data bytea NOT NULL
);
CREATE INDEX payload_dictionaries_workflow_idx ON payload_dictionaries (workflow_id, dict_id DESC);

CREATE TABLE execution_audit_events (
  id bigserial,
  execution_id uuid NOT NULL,
  event_type text NOT NULL,
  "timestamp" timestamptz NOT NULL DEFAULT now(),
  metadata jsonb NOT NULL DEFAULT '{}'::jsonb,
  PRIMARY KEY (id, "timestamp")
) PARTITION BY RANGE ("timestamp");
CREATE INDEX execution_audit_events_execution_idx ON execution_audit_events (execution_id, "timestamp");

CREATE TABLE execution_logs (
  id bigserial,
  execution_id uuid NOT NULL,
  step_id uuid,
  "timestamp" timestamptz NOT NULL DEFAULT now(),
  level text NOT NULL DEFAULT 'info',
  message text NOT NULL,
  PRIMARY KEY (id, "timestamp")
) PARTITION BY RANGE ("timestamp");
CREATE INDEX execution_logs_execution_idx ON execution_logs (execution_id, "timestamp");

CREATE TABLE archive_manifests (
  archive_id uuid PRIMARY KEY,
  created_at timestamptz NOT NULL DEFAULT now(),
  kind text NOT NULL,
  workflow_id text,
  uri text NOT NULL,
  storage_class text NOT NULL,
  execution_count int NOT NULL DEFAULT 0,
  event_count int NOT NULL DEFAULT 0,
  size_bytes bigint NOT NULL,
  sha256 text NOT NULL,
  manifest jsonb NOT NULL DEFAULT '{}'::jsonb
);
CREATE TABLE archive_tier_changes (
  id bigserial PRIMARY KEY,
  archive_id uuid NOT NULL,
  storage_class text NOT NULL,
  at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE execution_archives (
  execution_id uuid PRIMARY KEY,
  archive_id uuid NOT NULL,
  archived_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE replays (
  replay_id uuid PRIMARY KEY,
  created_at timestamptz NOT NULL DEFAULT now(),
  requested_by text NOT NULL,
  reason text NOT NULL,
  selection jsonb NOT NULL,
  forced boolean NOT NULL DEFAULT false,
  total int NOT NULL
);
CREATE TABLE replay_items (
  id bigserial PRIMARY KEY,
  replay_id uuid NOT NULL REFERENCES replays,
  event_id uuid NOT NULL,
  state text NOT NULL DEFAULT 'queued' CHECK (state IN ('queued', 'running', 'done', 'failed')),
  attempts int NOT NULL DEFAULT 0,
  claimed_by text,
  claimed_at timestamptz,
  finished_at timestamptz,
  execution_ids uuid[],
  error text
);
CREATE INDEX replay_items_queue_idx ON replay_items (state, id);
CREATE INDEX replay_items_replay_idx ON replay_items (replay_id, state);

CREATE TABLE alert_history (
  id bigserial PRIMARY KEY,
  created_at timestamptz NOT NULL DEFAULT now(),
  channel text NOT NULL,
  kind text NOT NULL,
  dedup_key text,
  action text NOT NULL,
  detail jsonb NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX alert_history_dedup_idx ON alert_history (dedup_key, id DESC);

CREATE TABLE notifications (
  id bigserial PRIMARY KEY,
  created_at timestamptz NOT NULL DEFAULT now(),
  channel text NOT NULL,
  payload jsonb NOT NULL,
  state text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'sent', 'failed')),
  attempts int NOT NULL DEFAULT 0,
  next_attempt_at timestamptz NOT NULL DEFAULT now(),
  last_error text,
  sent_at timestamptz
);
CREATE INDEX notifications_pending_idx ON notifications (state, next_attempt_at);

CREATE TABLE otlp_exports (
  id bigserial PRIMARY KEY,
  execution_id uuid NOT NULL,
  kind text NOT NULL DEFAULT 'final' CHECK (kind IN ('running', 'final')),
  created_at timestamptz NOT NULL DEFAULT now(),
  state text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'sent')),
  attempts int NOT NULL DEFAULT 0,
  next_attempt_at timestamptz NOT NULL DEFAULT now(),
  last_error text,
  sent_at timestamptz
);
CREATE INDEX otlp_exports_pending_idx ON otlp_exports (state, next_attempt_at);

CREATE TABLE search_outbox (
  id bigserial PRIMARY KEY,
  created_at timestamptz NOT NULL DEFAULT now(),
  execution_id uuid NOT NULL,
  step_id uuid,
  doc jsonb NOT NULL
);
CREATE TABLE search_progress (
  consumer text PRIMARY KEY,
  last_id bigint NOT NULL DEFAULT 0,
  updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE job_runs (
  id bigserial PRIMARY KEY,
  job text NOT NULL,
  slot timestamptz NOT NULL,
  started_at timestamptz NOT NULL DEFAULT now(),
  finished_at timestamptz,
  status text NOT NULL DEFAULT 'running',
  host text,
  detail jsonb NOT NULL DEFAULT '{}'::jsonb,
  UNIQUE (job, slot)
);

CREATE TABLE seals (
  seal_id bigserial PRIMARY KEY,
  period_start timestamptz NOT NULL,
  period_end timestamptz NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  root text NOT NULL,
  prev_root text,
  row_count bigint NOT NULL,
  counts jsonb NOT NULL DEFAULT '{}'::jsonb,
  uri text,
  UNIQUE (period_start)
);

CREATE TABLE admin_audit_log (
  id bigserial PRIMARY KEY,
  at timestamptz NOT NULL DEFAULT now(),
  actor text NOT NULL,
  action text NOT NULL,
  target text,
  detail jsonb NOT NULL DEFAULT '{}'::jsonb,
  remote_addr text
);
"""

VIEWS_AND_TRIGGERS = """
CREATE VIEW workflow_executions AS
SELECT s.execution_id, e.workflow_id, e.workflow_version, e.event_id, e.trigger_source,
       e.trigger_payload, s.status, s.started_at, s.completed_at, s.duration_ms, e.trace_id,
       e.root_span_id, s.error_message, s.failed_step, e.replay_of, e.created_at, s.archived_uri
FROM execution_state s
JOIN executions e ON e.execution_id = s.execution_id AND e.created_at = s.created_at;

CREATE VIEW workflow_execution_steps AS
SELECT step_id, execution_id, seq, step_name, step_type, input_payload_id AS input_payload,
       output_payload_id AS output_payload, error_message, attempt AS attempt_count, status,
       started_at, completed_at, duration_ms, external_request_id, span_id, parent_span_id,
       response_status, wait_ms, reused_from_execution, created_at
FROM steps;

CREATE FUNCTION flowledger_execution_created() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
BEGIN
  INSERT INTO execution_state (execution_id, workflow_id, workflow_version, event_id,
    trigger_source, trace_id, created_at, status, started_at, updated_at)
  VALUES (NEW.execution_id, NEW.workflow_id, NEW.workflow_version, NEW.event_id,
    NEW.trigger_source, NEW.trace_id, NEW.created_at, 'pending', NEW.started_at, now());
  RETURN NEW;
END $$;
CREATE TRIGGER executions_state AFTER INSERT ON executions
  FOR EACH ROW EXECUTE FUNCTION flowledger_execution_created();

CREATE FUNCTION flowledger_execution_transition() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
BEGIN
  UPDATE execution_state SET
    status = NEW.status,
    started_at = CASE WHEN NEW.status = 'running' THEN COALESCE(started_at, NEW.at)
                      ELSE started_at END,
    completed_at = CASE WHEN NEW.status IN ('completed', 'failed', 'timed_out', 'cancelled')
                        THEN NEW.at ELSE completed_at END,
    duration_ms = CASE WHEN NEW.status IN ('completed', 'failed', 'timed_out', 'cancelled')
                       THEN COALESCE((NEW.detail->>'duration_ms')::bigint,
                         (extract(epoch FROM NEW.at - COALESCE(started_at, NEW.at)) * 1000)::bigint)
                       ELSE duration_ms END,
    error_message = COALESCE(NEW.error_message, error_message),
    failed_step = COALESCE(NEW.failed_step, failed_step),
    last_seq = NEW.seq,
    updated_at = now()
  WHERE execution_id = NEW.execution_id AND last_seq < NEW.seq;
  RETURN NEW;
END $$;
CREATE TRIGGER execution_transitions_state AFTER INSERT ON execution_transitions
  FOR EACH ROW EXECUTE FUNCTION flowledger_execution_transition();

CREATE FUNCTION flowledger_execution_archived() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
BEGIN
  UPDATE execution_state SET archived_uri = (SELECT uri FROM archive_manifests
    WHERE archive_id = NEW.archive_id), updated_at = now()
  WHERE execution_id = NEW.execution_id;
  RETURN NEW;
END $$;
CREATE TRIGGER execution_archives_state AFTER INSERT ON execution_archives
  FOR EACH ROW EXECUTE FUNCTION flowledger_execution_archived();

CREATE FUNCTION flowledger_event_created() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
BEGIN
  INSERT INTO event_state (event_id, source_system, event_type, received_at, status, updated_at)
  VALUES (NEW.event_id, NEW.source_system, NEW.event_type, NEW.received_at, 'received', now())
  ON CONFLICT (event_id) DO NOTHING;
  RETURN NEW;
END $$;
CREATE TRIGGER events_state AFTER INSERT ON events
  FOR EACH ROW EXECUTE FUNCTION flowledger_event_created();

CREATE FUNCTION flowledger_event_status() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
BEGIN
  UPDATE event_state SET status = NEW.status, updated_at = NEW.at WHERE event_id = NEW.event_id;
  RETURN NEW;
END $$;
CREATE TRIGGER event_status_state AFTER INSERT ON event_status_history
  FOR EACH ROW EXECUTE FUNCTION flowledger_event_status();

CREATE FUNCTION flowledger_ensure_partitions(months_back int, months_ahead int) RETURNS int
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
  parent text;
  month date;
  created int := 0;
  name text;
BEGIN
  FOREACH parent IN ARRAY ARRAY['events', 'executions', 'steps', 'payloads',
                               'execution_audit_events', 'execution_logs'] LOOP
    FOR i IN -months_back..months_ahead LOOP
      month := (date_trunc('month', now()) + make_interval(months => i))::date;
      name := format('%s_y%sm%s', parent, to_char(month, 'YYYY'), to_char(month, 'MM'));
      IF to_regclass(name) IS NULL THEN
        EXECUTE format('CREATE TABLE %I PARTITION OF %I FOR VALUES FROM (%L) TO (%L)',
                       name, parent, month, (month + interval '1 month')::date);
        created := created + 1;
      END IF;
    END LOOP;
  END LOOP;
  RETURN created;
END $$;
"""

DEFAULT_PARTITIONS = "".join(
    f"CREATE TABLE {table}_default PARTITION OF {table} DEFAULT;\n" for table in PARTITIONED
)

GRANTS = """
SELECT flowledger_ensure_partitions(2, 3);
REVOKE ALL ON FUNCTION flowledger_ensure_partitions(int, int) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION flowledger_ensure_partitions(int, int) TO "@writer@", "@maintainer@";
REVOKE SELECT, INSERT ON event_state, execution_state FROM "@writer@";
GRANT SELECT ON event_state, execution_state TO "@writer@";
GRANT UPDATE ON replay_items, notifications, otlp_exports, search_progress, job_runs TO "@writer@";
GRANT DELETE ON notifications, otlp_exports TO "@writer@";
GRANT INSERT, UPDATE ON search_progress, job_runs, notifications, otlp_exports TO "@maintainer@";
GRANT INSERT ON archive_manifests, archive_tier_changes, execution_archives, alert_history,
  execution_audit_events, admin_audit_log, seals, event_status_history TO "@maintainer@";
GRANT UPDATE (trigger_payload, trigger_payload_id) ON executions TO "@maintainer@";
GRANT UPDATE (raw_body, payload) ON events TO "@maintainer@";
GRANT UPDATE (search_text) ON steps TO "@maintainer@";
GRANT UPDATE (data, uri) ON payloads TO "@maintainer@";
"""


def upgrade() -> None:
    _sql(ROLES)
    _sql(TABLES)
    _sql(VIEWS_AND_TRIGGERS)
    _sql(DEFAULT_PARTITIONS)
    _sql(GRANTS)
    _sql("RESET ROLE;")


def downgrade() -> None:
    _sql('SET ROLE "@owner@";')
    _sql("""
DROP VIEW IF EXISTS workflow_execution_steps, workflow_executions;
DROP TABLE IF EXISTS admin_audit_log, seals, job_runs, search_progress, search_outbox,
  otlp_exports, notifications, alert_history, replay_items, replays, execution_archives,
  archive_tier_changes, archive_manifests, execution_logs, execution_audit_events,
  payload_dictionaries, payloads, step_success_keys, steps, execution_state,
  execution_transitions, executions, event_state, event_status_history, event_idempotency,
  events, workflow_versions, workflows CASCADE;
DROP FUNCTION IF EXISTS flowledger_execution_created(), flowledger_execution_transition(),
  flowledger_execution_archived(), flowledger_event_created(), flowledger_event_status(),
  flowledger_ensure_partitions(int, int);
ALTER DEFAULT PRIVILEGES FOR ROLE "@owner@" IN SCHEMA public
  REVOKE SELECT, INSERT ON TABLES FROM "@writer@";
ALTER DEFAULT PRIVILEGES FOR ROLE "@owner@" IN SCHEMA public REVOKE SELECT ON TABLES FROM "@reader@";
ALTER DEFAULT PRIVILEGES FOR ROLE "@owner@" IN SCHEMA public
  REVOKE SELECT, DELETE ON TABLES FROM "@maintainer@";
ALTER DEFAULT PRIVILEGES FOR ROLE "@owner@" IN SCHEMA public
  REVOKE USAGE, SELECT ON SEQUENCES FROM "@writer@", "@maintainer@";
RESET ROLE;
""")
