"""Search for investigations: full-text and trigram indexes on step text, an outbox fed by a trigger.

Why: investigators look for an error string, an e-mail address or an order number anywhere in
step inputs, outputs and errors. `steps.search_text` (extracted after masking at write time)
gets a full-text GIN index (the 'simple' configuration: payload words are identifiers, names
and codes in many languages, which stemming would only damage) and a trigram GIN index for
identifiers that full-text splits badly. When OpenSearch is configured the product appends a row
to `search_outbox_switch`; from then on a trigger writes each step's search document to
`search_outbox` in the same transaction as the step (change data capture), so nothing reaches
OpenSearch that was not committed and nothing committed is missed. The switch is insert-only
like the ledger: its latest row is the current state.

Revision ID: 0005
Revises: 0001
"""

from migrations import run_sql as _sql

revision = "0005"
down_revision = "0001"
branch_labels = None
depends_on = None

UPGRADE = """
SET ROLE "@owner@";
CREATE INDEX IF NOT EXISTS steps_search_fts ON steps USING gin (to_tsvector('simple'::regconfig, search_text));
CREATE INDEX IF NOT EXISTS steps_search_trgm ON steps USING gin (search_text gin_trgm_ops);

CREATE TABLE IF NOT EXISTS search_outbox_switch (
  id bigserial PRIMARY KEY,
  at timestamptz NOT NULL DEFAULT now(),
  enabled boolean NOT NULL,
  reason text
);

-- The one definition of a step's search document, used by the outbox trigger and by reindex.
CREATE OR REPLACE FUNCTION flowledger_search_doc(step jsonb, workflow_id text) RETURNS jsonb
LANGUAGE sql IMMUTABLE AS $$
  SELECT jsonb_strip_nulls(jsonb_build_object(
    'step_id', step->'step_id', 'execution_id', step->'execution_id', 'workflow_id', workflow_id,
    'step_name', step->'step_name', 'step_type', step->'step_type', 'seq', step->'seq',
    'attempt', step->'attempt', 'status', step->'status', 'created_at', step->'created_at',
    'started_at', step->'started_at', 'completed_at', step->'completed_at',
    'duration_ms', step->'duration_ms', 'error_message', step->'error_message',
    'response_status', step->'response_status', 'external_request_id', step->'external_request_id',
    'search_text', step->'search_text'))
$$;

CREATE OR REPLACE FUNCTION flowledger_search_outbox_step() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
BEGIN
  -- The steps row is inserted before this runs, so the transaction already has its xid when
  -- the outbox id is drawn: the indexer's snapshot horizon relies on that order.
  IF COALESCE((SELECT enabled FROM search_outbox_switch ORDER BY id DESC LIMIT 1), false) THEN
    INSERT INTO search_outbox (execution_id, step_id, doc)
    VALUES (NEW.execution_id, NEW.step_id, flowledger_search_doc(to_jsonb(NEW),
      (SELECT workflow_id FROM executions WHERE execution_id = NEW.execution_id LIMIT 1)));
  END IF;
  RETURN NULL;
END $$;
DROP TRIGGER IF EXISTS steps_search_outbox ON steps;
CREATE TRIGGER steps_search_outbox AFTER INSERT ON steps
  FOR EACH ROW EXECUTE FUNCTION flowledger_search_outbox_step();
RESET ROLE;
"""

DOWNGRADE = """
SET ROLE "@owner@";
DROP TRIGGER IF EXISTS steps_search_outbox ON steps;
DROP FUNCTION IF EXISTS flowledger_search_outbox_step();
DROP FUNCTION IF EXISTS flowledger_search_doc(jsonb, text);
DROP TABLE IF EXISTS search_outbox_switch;
DROP INDEX IF EXISTS steps_search_trgm;
DROP INDEX IF EXISTS steps_search_fts;
RESET ROLE;
"""


def upgrade() -> None:
    _sql(UPGRADE)


def downgrade() -> None:
    _sql(DOWNGRADE)
