"""Calibration once: `run_costs.measured_by`, the run_key of the run whose calibration measured a cost.

A pair's costs are timed once per (LLM, System 1, device, dtype) and later runs copy them; NULL means the
run measured the cost itself. New kinds need no schema: `calibration` (seconds a run spent getting its
costs) and costs at batch sizes above 1.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("run_costs", sa.Column("measured_by", sa.Text(), nullable=True))


def downgrade() -> None:
    op.drop_column("run_costs", "measured_by")
