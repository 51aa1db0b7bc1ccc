"""CoF's interval sums per run: `sample_moments` (samples; tokens, consulted, mismatches; Σ m², Σ m·n, Σ n²;
Σ r and Σ r² of each sample's CoF r = m / n), read instead of every sample's row.

Fills it from `sample_sums`, so existing warehouses need no `rebuild-summaries`. The SQL is a copy of
`warehouse/summaries.py` (`SAMPLE_MOMENTS`; a migration never imports the package); a test checks that this
backfill equals a rebuild.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-04
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INTEGERS = ("samples", "tokens", "consulted", "mismatches", "m_m", "m_n", "n_n")
RATE = "(mismatches / tokens)"
BACKFILL = f"""
    SELECT run_id, count(*) AS samples, sum(tokens) AS tokens, sum(consulted) AS consulted,
           sum(mismatches) AS mismatches, sum(mismatches * mismatches) AS m_m,
           sum(mismatches * tokens) AS m_n, sum(tokens * tokens) AS n_n,
           sum({RATE}) AS r, sum({RATE} * {RATE}) AS r_r
    FROM sample_sums GROUP BY run_id"""


def upgrade() -> None:
    op.create_table(
        "sample_moments",
        sa.Column("run_id", sa.BigInteger(), nullable=False, autoincrement=False),
        *(sa.Column(c, sa.BigInteger(), nullable=False) for c in INTEGERS),
        sa.Column("r", sa.Double(), nullable=False),
        sa.Column("r_r", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("run_id", name=op.f("pk_sample_moments")),
    )
    op.execute(f"INSERT INTO sample_moments BY NAME {BACKFILL}")


def downgrade() -> None:
    op.drop_table("sample_moments")
