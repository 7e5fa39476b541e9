"""The 'received' status fact is written by the events trigger itself.

Why: ingestion is the hottest path. Appending 'received' from the application cost one more
statement per webhook plus a no-op UPDATE of the projection; the trigger that already creates
the event_state row now appends the fact in the same step, and the status trigger leaves the
projection alone for it.

Revision ID: 0012
Revises: 0011
"""

from migrations import run_sql as _sql

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

UP = """
SET ROLE "@owner@";
CREATE OR REPLACE FUNCTION flowledger_event_created() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
BEGIN
  INSERT INTO event_state (event_id, source_system, event_type, received_at, status, updated_at)
  VALUES (NEW.event_id, NEW.source_system, NEW.event_type, NEW.received_at, 'received', now())
  ON CONFLICT (event_id) DO NOTHING;
  INSERT INTO event_status_history (event_id, status, at) VALUES (NEW.event_id, 'received', NEW.received_at);
  RETURN NEW;
END $$;
CREATE OR REPLACE FUNCTION flowledger_event_status() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
BEGIN
  IF NEW.status <> 'received' THEN
    UPDATE event_state SET status = NEW.status, updated_at = NEW.at WHERE event_id = NEW.event_id;
  END IF;
  RETURN NEW;
END $$;
RESET ROLE;
"""

DOWN = """
SET ROLE "@owner@";
CREATE OR REPLACE FUNCTION flowledger_event_created() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
BEGIN
  INSERT INTO event_state (event_id, source_system, event_type, received_at, status, updated_at)
  VALUES (NEW.event_id, NEW.source_system, NEW.event_type, NEW.received_at, 'received', now())
  ON CONFLICT (event_id) DO NOTHING;
  RETURN NEW;
END $$;
CREATE OR REPLACE FUNCTION flowledger_event_status() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
BEGIN
  UPDATE event_state SET status = NEW.status, updated_at = NEW.at WHERE event_id = NEW.event_id;
  RETURN NEW;
END $$;
RESET ROLE;
"""


def upgrade() -> None:
    _sql(UP)


def downgrade() -> None:
    _sql(DOWN)
