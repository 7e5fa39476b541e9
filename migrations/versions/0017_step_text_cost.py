"""Step text is indexed through a function that tells the planner what parsing text really costs.

Why: PostgreSQL prices to_tsvector at 100 operator costs a call, while parsing a step's few KB of
extracted text takes about 0.25 ms. On a ledger of a few thousand steps the planner therefore chose
to parse every step's text (0.7 s at 3,000 steps) over a GIN index scan of a few milliseconds. The
built-in function's cost cannot be changed without superuser rights; a wrapper with an honest COST
can, and the full-text index is rebuilt over it (same name, same contents).

Revision ID: 0017
Revises: 0016
"""

from migrations import run_sql as _sql

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None

UP = """
SET ROLE "@owner@";
CREATE OR REPLACE FUNCTION flowledger_step_tsv(t text) RETURNS tsvector
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE COST 10000 AS $$
BEGIN
  RETURN to_tsvector('simple'::regconfig, t);
END $$;
DROP INDEX IF EXISTS steps_search_fts;
CREATE INDEX steps_search_fts ON steps USING gin (flowledger_step_tsv(search_text));
RESET ROLE;
"""

DOWN = """
SET ROLE "@owner@";
DROP INDEX IF EXISTS steps_search_fts;
CREATE INDEX steps_search_fts ON steps USING gin (to_tsvector('simple'::regconfig, search_text));
DROP FUNCTION IF EXISTS flowledger_step_tsv(text);
RESET ROLE;
"""


def upgrade() -> None:
    _sql(UP)


def downgrade() -> None:
    _sql(DOWN)
