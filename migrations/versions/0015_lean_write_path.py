"""Ingestion writes fewer index entries: the id-only indexes duplicated the primary keys.

Why: events, executions, steps and payloads each had a btree on their id beside the primary key
(id, created_at). A primary key whose leading column is the id answers a look-up by id alone
just as well, so every insert was maintaining one index too many (about 2 KB per benchmark
execution, and one more index entry per webhook). The event status trigger now fires only for
statuses other than 'received' (the 'received' fact is written by the events trigger, 0012), so
an accepted webhook no longer calls a PL/pgSQL function that does nothing.

Revision ID: 0015
Revises: 0014
"""

from migrations import run_sql as _sql

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

UP = """
SET ROLE "@owner@";
DROP INDEX IF EXISTS events_id_idx;
DROP INDEX IF EXISTS executions_id_idx;
DROP INDEX IF EXISTS steps_id_idx;
DROP INDEX IF EXISTS payloads_id_idx;
DROP TRIGGER IF EXISTS event_status_state ON event_status_history;
CREATE TRIGGER event_status_state AFTER INSERT ON event_status_history
  FOR EACH ROW WHEN (NEW.status <> 'received') EXECUTE FUNCTION flowledger_event_status();
RESET ROLE;
"""

DOWN = """
SET ROLE "@owner@";
CREATE INDEX IF NOT EXISTS events_id_idx ON events (event_id);
CREATE INDEX IF NOT EXISTS executions_id_idx ON executions (execution_id);
CREATE INDEX IF NOT EXISTS steps_id_idx ON steps (step_id);
CREATE INDEX IF NOT EXISTS payloads_id_idx ON payloads (payload_id);
DROP TRIGGER IF EXISTS event_status_state ON event_status_history;
CREATE TRIGGER event_status_state AFTER INSERT ON event_status_history
  FOR EACH ROW EXECUTE FUNCTION flowledger_event_status();
RESET ROLE;
"""


def upgrade() -> None:
    _sql(UP)


def downgrade() -> None:
    _sql(DOWN)
