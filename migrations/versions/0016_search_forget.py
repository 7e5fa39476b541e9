"""Erasure and deletion reach the search index: the outbox carries 'forget this execution' markers.

Why: erasure (GDPR) and force-delete removed a subject's text from PostgreSQL and dropped the outbox
rows not yet sent, but step documents already indexed in OpenSearch kept the erased values
searchable there. The maintainer role (which erases and deletes) may not write the outbox itself;
this function appends one marker per execution when the outbox is on, and the indexer turns each
marker into a _delete_by_query after the documents queued before it, so the order holds and an
OpenSearch that is down delays the removal without losing it.

Revision ID: 0016
Revises: 0015
"""

from migrations import run_sql as _sql

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None

UP = """
SET ROLE "@owner@";
CREATE OR REPLACE FUNCTION flowledger_search_forget(ids uuid[]) RETURNS int
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
  added int := 0;
BEGIN
  IF COALESCE((SELECT enabled FROM search_outbox_switch ORDER BY id DESC LIMIT 1), false) THEN
    INSERT INTO search_outbox (execution_id, doc)
    SELECT DISTINCT i, jsonb_build_object('op', 'forget', 'execution_id', i) FROM unnest(ids) AS i;
    GET DIAGNOSTICS added = ROW_COUNT;
  END IF;
  RETURN added;
END $$;
REVOKE ALL ON FUNCTION flowledger_search_forget(uuid[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION flowledger_search_forget(uuid[]) TO "@maintainer@";
RESET ROLE;
"""

DOWN = """
SET ROLE "@owner@";
DROP FUNCTION IF EXISTS flowledger_search_forget(uuid[]);
RESET ROLE;
"""


def upgrade() -> None:
    _sql(UP)


def downgrade() -> None:
    _sql(DOWN)
