"""The early-share test's sums per run and early window: `window_moments` (samples; the sums of n, m, e, em,
of the product of each two, of d = em − m·e/n and d²), read instead of every sample's row.

Fills it from `sample_sums` (complete since 0012), so existing warehouses need no `rebuild-summaries`. The
SQL is a copy of `warehouse/summaries.py` (`EARLY_WINDOWS`, `MOMENT_SUMS`; a migration never imports the
package); a test checks that this backfill equals a rebuild.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-03
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

WINDOWS = [*(f"step_lt_{k}" for k in range(1, 17)), *(f"cell_lt_{c}" for c in (50, 100, 200, 250))]
VALUES = {"n": "tokens", "m": "mismatches", "e": "early_tokens", "em": "early_mismatches"}
PAIRS = [(a, b) for i, a in enumerate(VALUES) for b in list(VALUES)[i:]]
ON = ", ".join(f"(tokens_{w}, mismatches_{w}) AS {w}" for w in WINDOWS)
RATE = "CASE WHEN tokens > 0 THEN early_tokens / tokens ELSE 0 END"
BACKFILL = f"""
    SELECT run_id, window_name, count(*) AS samples, {", ".join(f"sum({v}) AS {v}" for v in VALUES.values())},
           {", ".join(f"sum({VALUES[a]} * {VALUES[b]}) AS {a}_{b}" for a, b in PAIRS)},
           sum(d) AS d, sum(d * d) AS d_d
    FROM (SELECT *, early_mismatches - mismatches * {RATE} AS d
          FROM (UNPIVOT sample_sums ON {ON} INTO NAME window_name VALUE early_tokens, early_mismatches))
    GROUP BY run_id, window_name"""


def upgrade() -> None:
    op.create_table(
        "window_moments",
        sa.Column("run_id", sa.BigInteger(), nullable=False, autoincrement=False),
        sa.Column("window_name", sa.Text(), nullable=False),
        sa.Column("samples", sa.BigInteger(), nullable=False),
        *(sa.Column(v, sa.BigInteger(), nullable=False) for v in VALUES.values()),
        *(sa.Column(f"{a}_{b}", sa.BigInteger(), nullable=False) for a, b in PAIRS),
        sa.Column("d", sa.Double(), nullable=False),
        sa.Column("d_d", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("run_id", "window_name", name=op.f("pk_window_moments")),
    )
    op.execute(f"INSERT INTO window_moments BY NAME {BACKFILL}")


def downgrade() -> None:
    op.drop_table("window_moments")
