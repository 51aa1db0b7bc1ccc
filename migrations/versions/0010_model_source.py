"""Where a model's weights came from: `models.source` (a GGUF file, a draft recipe) and `quantization`.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("models", sa.Column("source", sa.Text(), nullable=True))
    op.add_column("models", sa.Column("quantization", sa.Text(), nullable=True))


def downgrade() -> None:
    op.drop_column("models", "quantization")
    op.drop_column("models", "source")
