"""Step search keeps its full-text vector in the index only, over slimmer extracted text.

Why: at benchmark scale the stored tsvector (0013) was the largest thing in the ledger, about
8 KB per step against 3 KB for both compressed payloads, because the 'simple' parser splits
every UUID, timestamp and amount into several positioned lexemes. Writing it (and its GIN
entries) dominated step inserts. services.text_extraction now keeps each distinct string
once and leaves out timestamps and small numbers; the vector lives only in an expression GIN
index, and ranking recomputes it for the few hundred newest matches it ranks.

Revision ID: 0014
Revises: 0013
"""

from migrations import run_sql as _sql

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

UP = """
SET ROLE "@owner@";
CREATE INDEX IF NOT EXISTS steps_search_fts ON steps USING gin (to_tsvector('simple'::regconfig, search_text));
DROP INDEX IF EXISTS steps_search_tsv;
ALTER TABLE steps DROP COLUMN IF EXISTS search_tsv;
RESET ROLE;
"""

DOWN = """
SET ROLE "@owner@";
ALTER TABLE steps ADD COLUMN IF NOT EXISTS search_tsv tsvector
  GENERATED ALWAYS AS (to_tsvector('simple'::regconfig, COALESCE(search_text, ''))) STORED;
CREATE INDEX IF NOT EXISTS steps_search_tsv ON steps USING gin (search_tsv);
DROP INDEX IF EXISTS steps_search_fts;
RESET ROLE;
"""


def upgrade() -> None:
    _sql(UP)


def downgrade() -> None:
    _sql(DOWN)
