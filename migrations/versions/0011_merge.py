"""Merge point: the runner-era branches (jobs, search, security and removals, rollups) meet here.

Why: these revisions were written in parallel, each from 0001; a single head keeps
`flowledger migrate` and readiness checks simple and gives later revisions one parent.

Revision ID: 0011
Revises: 0004, 0005, 0009, 0010
"""

revision = "0011"
down_revision = ("0004", "0005", "0009", "0010")
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
