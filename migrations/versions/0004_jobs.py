"""Scheduled jobs: where archived and erased payloads went, and a guarded partition drop.

Why: retention deletes payload rows once they sit in an archive object, so a payload id must still
lead to its archive (archived_payloads) or to the erasure that removed it (erased_payloads);
events archived with their executions are listed in event_archives. Dropping a partition is DDL
only the owner may run, so a SECURITY DEFINER function lets the maintainer drop a monthly
partition of a ledger table (never the default partition, never anything else), which is no more
power than the DELETE it already holds.

Revision ID: 0004
Revises: 0001
"""

from migrations import run_sql as _sql

revision = "0004"
down_revision = "0001"
branch_labels = None
depends_on = None

UPGRADE = """
SET ROLE "@owner@";
CREATE TABLE IF NOT EXISTS archived_payloads (
  payload_id uuid PRIMARY KEY,
  archive_id uuid NOT NULL,
  execution_id uuid NOT NULL,
  uri text,
  archived_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS archived_payloads_archive_idx ON archived_payloads (archive_id);
CREATE INDEX IF NOT EXISTS archived_payloads_execution_idx ON archived_payloads (execution_id);
CREATE TABLE IF NOT EXISTS event_archives (
  event_id uuid PRIMARY KEY,
  archive_id uuid NOT NULL,
  archived_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS event_archives_archive_idx ON event_archives (archive_id);
CREATE TABLE IF NOT EXISTS erasures (
  erasure_id uuid PRIMARY KEY,
  created_at timestamptz NOT NULL DEFAULT now(),
  requested_by text NOT NULL,
  subject_field text NOT NULL,
  value_sha256 text NOT NULL,
  detail jsonb NOT NULL DEFAULT '{}'::jsonb
);
CREATE TABLE IF NOT EXISTS erased_payloads (
  payload_id uuid PRIMARY KEY,
  erasure_id uuid NOT NULL,
  execution_id uuid NOT NULL
);
CREATE INDEX IF NOT EXISTS archive_manifests_workflow_idx ON archive_manifests (workflow_id, created_at);
CREATE INDEX IF NOT EXISTS execution_archives_archive_idx ON execution_archives (archive_id);
CREATE INDEX IF NOT EXISTS archive_tier_changes_archive_idx ON archive_tier_changes (archive_id, id DESC);
CREATE INDEX IF NOT EXISTS job_runs_job_idx ON job_runs (job, started_at DESC);
CREATE INDEX IF NOT EXISTS alert_history_kind_idx ON alert_history (kind, id DESC);
-- Expiry deletes whole executions by id in short batches; these keep each batch an index lookup.
CREATE INDEX IF NOT EXISTS step_success_keys_execution_idx ON step_success_keys (execution_id);
CREATE INDEX IF NOT EXISTS event_idempotency_event_idx ON event_idempotency (event_id);
CREATE INDEX IF NOT EXISTS search_outbox_execution_idx ON search_outbox (execution_id);
CREATE INDEX IF NOT EXISTS otlp_exports_execution_idx ON otlp_exports (execution_id);

CREATE OR REPLACE FUNCTION flowledger_drop_partition(partition_name text) RETURNS boolean
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
  parent text;
BEGIN
  SELECT p.relname INTO parent FROM pg_inherits i
    JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_class p ON p.oid = i.inhparent
    JOIN pg_namespace n ON n.oid = c.relnamespace
  WHERE c.relname = partition_name AND n.nspname = 'public';
  IF parent IS NULL OR parent NOT IN ('events', 'executions', 'steps', 'payloads',
                                      'execution_audit_events', 'execution_logs') THEN
    RAISE EXCEPTION 'flowledger_drop_partition: % is not a ledger partition', partition_name;
  END IF;
  IF partition_name = parent || '_default' THEN
    RAISE EXCEPTION 'flowledger_drop_partition: the default partition is never dropped';
  END IF;
  EXECUTE format('DROP TABLE %I', partition_name);
  RETURN true;
END $$;
REVOKE ALL ON FUNCTION flowledger_drop_partition(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION flowledger_drop_partition(text) TO "@maintainer@";
GRANT INSERT ON archived_payloads, event_archives, erasures, erased_payloads TO "@maintainer@";
GRANT INSERT ON job_runs TO "@writer@";
RESET ROLE;
"""

DOWNGRADE = """
SET ROLE "@owner@";
DROP FUNCTION IF EXISTS flowledger_drop_partition(text);
DROP INDEX IF EXISTS archive_manifests_workflow_idx, execution_archives_archive_idx,
  archive_tier_changes_archive_idx, job_runs_job_idx, alert_history_kind_idx, step_success_keys_execution_idx,
  event_idempotency_event_idx, search_outbox_execution_idx, otlp_exports_execution_idx;
DROP TABLE IF EXISTS erased_payloads, erasures, event_archives, archived_payloads;
RESET ROLE;
"""


def upgrade() -> None:
    _sql(UPGRADE)


def downgrade() -> None:
    _sql(DOWNGRADE)
