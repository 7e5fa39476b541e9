"""Steps keep their full-text vector in a stored generated column.

Why: ranking a search needs each match's tsvector; with only an expression index PostgreSQL
re-parsed every matching step's text (kilobytes each) on every query. The stored column is
computed once at insert (as the index entry already was) and follows erasure automatically.

Revision ID: 0013
Revises: 0012
"""

from migrations import run_sql as _sql

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

UP = """
SET ROLE "@owner@";
ALTER TABLE steps ADD COLUMN IF NOT EXISTS search_tsv tsvector
  GENERATED ALWAYS AS (to_tsvector('simple'::regconfig, COALESCE(search_text, ''))) STORED;
CREATE INDEX IF NOT EXISTS steps_search_tsv ON steps USING gin (search_tsv);
DROP INDEX IF EXISTS steps_search_fts;
RESET ROLE;
"""

DOWN = """
SET ROLE "@owner@";
CREATE INDEX IF NOT EXISTS steps_search_fts ON steps USING gin (to_tsvector('simple'::regconfig, search_text));
DROP INDEX IF EXISTS steps_search_tsv;
ALTER TABLE steps DROP COLUMN IF EXISTS search_tsv;
RESET ROLE;
"""


def upgrade() -> None:
    _sql(UP)


def downgrade() -> None:
    _sql(DOWN)
