"""Router replay from summary rows: `router_sums` (tokens and replay mismatches per router grid cell).

Creates the table and fills it from the token events already in the file, so existing warehouses need no
`rebuild-summaries`. The cell SQL is a copy of `warehouse/summaries.py` (`ROUTER_FEATURES`; a migration
never imports the package); a test checks that this backfill equals a rebuild.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-03
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# router -> (feature, rounding, cells per unit)
ROUTERS = {
    "max_prob": ("s1_prob", "floor", 4096),
    "margin": ("s1_margin", "floor", 4096),
    "entropy": ("s1_entropy", "ceil", 512),
}
BACKFILL = " UNION ALL ".join(
    f"SELECT run_id, '{kind}' AS router, CAST({rounding}(CAST({column} AS DOUBLE) * {cells}) AS INTEGER) "
    "AS cell, count(*) AS tokens, count_if(s2_token_id <> s1_token_id) AS replay_mismatches "
    "FROM token_events GROUP BY ALL"
    for kind, (column, rounding, cells) in ROUTERS.items()
)


def upgrade() -> None:
    op.create_table(
        "router_sums",
        sa.Column("run_id", sa.BigInteger(), nullable=False, autoincrement=False),
        sa.Column("router", sa.Text(), nullable=False),
        sa.Column("cell", sa.Integer(), nullable=False, autoincrement=False),
        sa.Column("tokens", sa.BigInteger(), nullable=False),
        sa.Column("replay_mismatches", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("run_id", "router", "cell", name=op.f("pk_router_sums")),
    )
    op.execute(f"INSERT INTO router_sums BY NAME {BACKFILL}")


def downgrade() -> None:
    op.drop_table("router_sums")
