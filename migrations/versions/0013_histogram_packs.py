"""Uncertainty from packed histograms: `histogram_packs` holds each run's `histogram_sums` rows of each
uncertainty predictor as one BLOB (its cells lo, lo + 1, ... as big-endian (tokens, mismatches) pairs of
`width` bytes), so an answer over many runs reads ~1 MB instead of summing ~3,000 rows per run.

Creates the table and packs the `histogram_sums` rows already in the file, so existing warehouses need no
`rebuild-summaries`. The SQL is a copy of `warehouse/summaries.py` (`_pack_select`; a migration never
imports the package); a test checks that this backfill equals a rebuild.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-03
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

PREDICTORS = ", ".join(f"'{p}'" for p in ("entropy", "one_minus_max_prob", "one_minus_margin"))
BACKFILL = f"""
    WITH h AS (SELECT run_id, feature, cell, tokens, mismatches FROM histogram_sums
               WHERE feature IN ({PREDICTORS})),
         s AS (SELECT run_id, feature, min(cell) AS lo, max(cell) AS hi,
                      CASE WHEN max(tokens) < {2**31} THEN 4 ELSE 8 END AS width FROM h GROUP BY ALL),
         d AS (SELECT run_id, feature, lo, width, unnest(range(lo, hi + 1)) AS cell FROM s)
    SELECT d.run_id, d.feature, CAST(d.lo AS INTEGER) AS lo, CAST(d.width AS SMALLINT) AS width,
           unhex(string_agg(printf(CASE d.width WHEN 4 THEN '%08x%08x' WHEN 8 THEN '%016x%016x' END,
                                   coalesce(h.tokens, 0), coalesce(h.mismatches, 0)), '' ORDER BY d.cell))
           AS counts
    FROM d LEFT JOIN h USING (run_id, feature, cell) GROUP BY ALL"""


def upgrade() -> None:
    op.create_table(
        "histogram_packs",
        sa.Column("run_id", sa.BigInteger(), nullable=False, autoincrement=False),
        sa.Column("feature", sa.Text(), nullable=False),
        sa.Column("lo", sa.Integer(), nullable=False),
        sa.Column("width", sa.SmallInteger(), nullable=False),
        sa.Column("counts", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("run_id", "feature", name=op.f("pk_histogram_packs")),
    )
    op.execute(f"INSERT INTO histogram_packs BY NAME {BACKFILL}")


def downgrade() -> None:
    op.drop_table("histogram_packs")
