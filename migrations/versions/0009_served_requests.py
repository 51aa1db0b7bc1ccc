"""Serving traces in: per-request acceptance saved from vLLM, SGLang or TensorRT-LLM responses.

`served_requests` (one row per imported response: engine, model, draft, K, drafted, accepted, verify
steps), `served_histogram` (steps that accepted exactly `accepted` drafts) and `served_steps` (per verify
step, where the engine reports it: vLLM `detailed`). `import_key` (SHA-256 of the engine and the line)
keeps a re-import from adding anything.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(sa.schema.CreateSequence(sa.Sequence("served_requests_request_id_seq", start=1)))
    op.create_table(
        "served_requests",
        sa.Column(
            "request_id",
            sa.BigInteger(),
            server_default=sa.text("nextval('served_requests_request_id_seq')"),
            nullable=False,
        ),
        sa.Column("import_id", sa.BigInteger(), nullable=False),
        sa.Column("import_key", sa.Text(), nullable=False),
        sa.Column("engine", sa.Text(), nullable=False),
        sa.Column("model", sa.Text(), nullable=False),
        sa.Column("draft", sa.Text(), nullable=False),
        sa.Column("k", sa.Integer(), nullable=True),
        sa.Column("drafted", sa.BigInteger(), nullable=False),
        sa.Column("accepted", sa.BigInteger(), nullable=False),
        sa.Column("steps", sa.BigInteger(), nullable=True),
        sa.Column("completion_tokens", sa.BigInteger(), nullable=True),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("line", sa.Integer(), nullable=False),
        sa.Column("imported_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("request_id", name=op.f("pk_served_requests")),
    )
    op.create_table(
        "served_histogram",
        sa.Column("request_id", sa.BigInteger(), nullable=False),
        sa.Column("accepted", sa.Integer(), nullable=False),
        sa.Column("steps", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("request_id", "accepted", name=op.f("pk_served_histogram")),
    )
    op.create_table(
        "served_steps",
        sa.Column("request_id", sa.BigInteger(), nullable=False),
        sa.Column("step", sa.Integer(), nullable=False),
        sa.Column("drafted", sa.Integer(), nullable=False),
        sa.Column("accepted", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("request_id", "step", name=op.f("pk_served_steps")),
    )


def downgrade() -> None:
    op.drop_table("served_steps")
    op.drop_table("served_histogram")
    op.drop_table("served_requests")
    op.execute(sa.schema.DropSequence(sa.Sequence("served_requests_request_id_seq")))
