"""Events received per hour come from a maintained rollup too.

Why: after 0021 the overview's only read that grew with the ledger was its "events received" card,
a count of the period's event_state rows, which grows with the traffic: at ten thousand events a
minute a day is 14 million rows and 30 days over 400 million. The rollup job now also folds
events into event_hourly_stats (per UTC hour of received_at), in the same transaction and up to the
same watermark as the execution rollups: received_at, like a transition's recorded_at, is the
inserting transaction's start (the column's default; ingestion never sets it), so the job's cutoff
below the oldest open writer transaction holds for it too. flowledger_events_received() adds the
events received after the watermark (event_state_received_idx), so the count is exact for the
whole hours covering a period, like the other cards. Events received before the watermark are
folded once by this migration.

Revision ID: 0022
Revises: 0021
"""

from migrations import run_sql as _sql

revision = "0022"
down_revision = "0021"
branch_labels = None
depends_on = None

UP = """
SET ROLE "@owner@";
CREATE TABLE IF NOT EXISTS event_hourly_stats (
  hour timestamptz PRIMARY KEY,
  events bigint NOT NULL
);
GRANT UPDATE ON event_hourly_stats TO "@writer@";
INSERT INTO event_hourly_stats (hour, events)
SELECT date_trunc('hour', e.received_at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC', count(*) FROM event_state e
WHERE e.received_at < (SELECT flowledger_rollup_watermark())
GROUP BY 1 ON CONFLICT DO NOTHING;
-- Rolled hours plus the events received after the watermark, in the caller's snapshot.
CREATE OR REPLACE FUNCTION flowledger_events_received(since timestamptz, until timestamptz) RETURNS bigint
LANGUAGE plpgsql STABLE SET search_path = public, pg_temp AS $$
DECLARE
  mark timestamptz := flowledger_rollup_watermark();
  rolled bigint;
  tail bigint;
BEGIN
  SELECT COALESCE(sum(r.events), 0) INTO rolled FROM event_hourly_stats r WHERE r.hour >= since AND r.hour < until;
  EXECUTE 'SELECT count(*) FROM event_state e WHERE e.received_at >= $1 AND e.received_at >= $2 '
          'AND e.received_at < $3' INTO tail USING mark, since, until;
  RETURN rolled + tail;
END $$;
RESET ROLE;
"""

DOWN = """
SET ROLE "@owner@";
DROP FUNCTION IF EXISTS flowledger_events_received(timestamptz, timestamptz);
DROP TABLE IF EXISTS event_hourly_stats;
RESET ROLE;
"""


def upgrade() -> None:
    _sql(UP)


def downgrade() -> None:
    _sql(DOWN)
