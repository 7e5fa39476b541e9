"""An accepted webhook writes fewer rows and index entries.

Why: the webhook benchmark stood at 0.6-0.7x of a bare durable INSERT, and timing inserts inside
PostgreSQL showed where an event's extra cost went. Two of its parts were duplicates:
- events_source_idx and events_type_idx: (source_system | event_type, received_at) on events. No
  query reads them. Listing and filtering go through event_state, which has its own source index.
  They cost about 35 µs per insert.
- the 'received' row in event_status_history, written by the events trigger (0012). The events row
  is that fact, with its received_at, and it is sealed like the history. The history row cost a
  second heap insert, two index entries and a sequence step (about 55 µs). services.events.get_event
  now shows 'received' from the events row when the history has no such row. Events stored before
  this revision keep theirs.

Revision ID: 0020
Revises: 0019
"""

from migrations import run_sql as _sql

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None

UP = """
SET ROLE "@owner@";
DROP INDEX IF EXISTS events_source_idx;
DROP INDEX IF EXISTS events_type_idx;
CREATE OR REPLACE FUNCTION flowledger_event_created() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
BEGIN
  INSERT INTO event_state (event_id, source_system, event_type, received_at, status, updated_at)
  VALUES (NEW.event_id, NEW.source_system, NEW.event_type, NEW.received_at, 'received', now())
  ON CONFLICT (event_id) DO NOTHING;
  RETURN NEW;
END $$;
RESET ROLE;
"""

DOWN = """
SET ROLE "@owner@";
CREATE INDEX IF NOT EXISTS events_source_idx ON events (source_system, received_at DESC);
CREATE INDEX IF NOT EXISTS events_type_idx ON events (event_type, received_at DESC);
CREATE OR REPLACE FUNCTION flowledger_event_created() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
BEGIN
  INSERT INTO event_state (event_id, source_system, event_type, received_at, status, updated_at)
  VALUES (NEW.event_id, NEW.source_system, NEW.event_type, NEW.received_at, 'received', now())
  ON CONFLICT (event_id) DO NOTHING;
  INSERT INTO event_status_history (event_id, status, at) VALUES (NEW.event_id, 'received', NEW.received_at);
  RETURN NEW;
END $$;
RESET ROLE;
"""


def upgrade() -> None:
    _sql(UP)


def downgrade() -> None:
    _sql(DOWN)
