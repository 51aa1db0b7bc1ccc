"""Speculative decoding: per-token draft position and acceptance, and one row per draft/verify cycle.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # token_events has no index, so DuckDB can add (and later drop) its columns in place.
    op.add_column("token_events", sa.Column("draft_index", sa.SmallInteger(), nullable=True))
    op.add_column("token_events", sa.Column("accepted", sa.Boolean(), nullable=True))
    op.create_table(
        "spec_cycles",
        sa.Column("run_id", sa.BigInteger(), nullable=False),
        sa.Column("sample_id", sa.Integer(), nullable=False),
        sa.Column("cycle", sa.Integer(), nullable=False),
        sa.Column("drafted", sa.SmallInteger(), nullable=False),
        sa.Column("accepted", sa.SmallInteger(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("spec_cycles")
    op.drop_column("token_events", "accepted")
    op.drop_column("token_events", "draft_index")
