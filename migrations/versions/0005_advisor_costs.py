"""Advisor costs: each run's measured forward and cycle costs, and the per-token acceptance probability.

`run_costs` holds what a speed-up prediction needs, measured by the collector on the run's own device
(`kind`: s1_forward, s2_forward, cycle, prefill, llm_generate, decode; `tokens` new tokens per forward,
drafted tokens per cycle, or generated tokens; `seconds` per forward/cycle/prompt, or in all for
llm_generate and decode). `token_events.accept_prob` is Σ_v min(p_s(v), p_l(v)).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # token_events has no index, so DuckDB can add (and later drop) its columns in place.
    op.add_column("token_events", sa.Column("accept_prob", sa.Float(), nullable=True))
    op.create_table(
        "run_costs",
        sa.Column("run_id", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("tokens", sa.Integer(), nullable=False),
        sa.Column("batch_size", sa.Integer(), nullable=False),
        sa.Column("seconds", sa.Double(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("run_costs")
    op.drop_column("token_events", "accept_prob")
