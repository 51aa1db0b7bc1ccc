"""Early-share windows from summary rows: a `tokens_<window>` and `mismatches_<window>` column of
`sample_sums` per early window (the first k = 1..16 steps, the first 5%, 10%, 20% and 25% on the 0.001
rel_pos grid), and `step_sums` (tokens and mismatches per sample, first step 0..7 and rel_pos cell).

Fills both from the token events already in the file, so existing warehouses need no `rebuild-summaries`.
The SQL is a copy of `warehouse/summaries.py` (`EARLY_WINDOWS`, `FIRST_STEPS`; a migration never imports
the package); a test checks that this backfill equals a rebuild.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-03
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CELL = "CAST(floor(CAST(rel_pos AS DOUBLE) * 1000) AS INTEGER)"
WINDOWS = {
    **{f"step_lt_{k}": f"step < {k}" for k in range(1, 17)},
    **{f"cell_lt_{c}": f"{CELL} < {c}" for c in (50, 100, 200, 250)},
}
COLUMNS = [f"{what}_{w}" for w in WINDOWS for what in ("tokens", "mismatches")]
SAMPLE_WINDOWS = ", ".join(
    f"count_if({cond}) AS tokens_{w}, count_if(mismatch AND {cond}) AS mismatches_{w}"
    for w, cond in WINDOWS.items()
)
STEPS = (
    f"SELECT run_id, sample_id, step, {CELL} AS cell, count(*) AS tokens, count_if(mismatch) AS mismatches "
    "FROM token_events WHERE step >= 0 AND step < 8 GROUP BY ALL"
)


def upgrade() -> None:
    for column in COLUMNS:
        op.add_column("sample_sums", sa.Column(column, sa.BigInteger(), server_default="0", nullable=False))
    op.execute(
        f"UPDATE sample_sums SET {', '.join(f'{c} = w.{c}' for c in COLUMNS)} "
        f"FROM (SELECT run_id, sample_id, {SAMPLE_WINDOWS} FROM token_events GROUP BY ALL) w "
        "WHERE sample_sums.run_id = w.run_id AND sample_sums.sample_id = w.sample_id"
    )
    op.create_table(
        "step_sums",
        sa.Column("run_id", sa.BigInteger(), nullable=False, autoincrement=False),
        sa.Column("sample_id", sa.Integer(), nullable=False, autoincrement=False),
        sa.Column("step", sa.Integer(), nullable=False, autoincrement=False),
        sa.Column("cell", sa.Integer(), nullable=False, autoincrement=False),
        sa.Column("tokens", sa.BigInteger(), nullable=False),
        sa.Column("mismatches", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("run_id", "sample_id", "step", "cell", name=op.f("pk_step_sums")),
    )
    op.execute(f"INSERT INTO step_sums BY NAME {STEPS}")


def downgrade() -> None:
    op.drop_table("step_sums")
    for column in reversed(COLUMNS):
        op.drop_column("sample_sums", column)
