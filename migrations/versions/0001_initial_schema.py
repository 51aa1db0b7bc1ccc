"""Initial schema: models, runs, samples, token_events, the ingest ledger, and the analytics views.

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Entropy bins are 0.5 nats wide; the last one is open above.
ENTROPY_BIN_WIDTH = 0.5
ENTROPY_BINS = 12

VIEWS = {
    "run_cof": """
        WITH agg AS (
            SELECT run_id,
                   count(*) AS tokens,
                   sum(CAST(consulted AS BIGINT)) AS consulted,
                   sum(CAST(mismatch AS BIGINT)) AS mismatches
            FROM token_events GROUP BY run_id
        )
        SELECT r.run_id,
               CAST(coalesce(a.tokens, 0) AS BIGINT) AS tokens,
               CAST(coalesce(a.consulted, 0) AS BIGINT) AS consulted,
               CAST(coalesce(a.mismatches, 0) AS BIGINT) AS mismatches,
               CAST(a.mismatches AS DOUBLE) / nullif(a.tokens, 0) AS cof,
               CAST(a.consulted AS DOUBLE) / nullif(a.tokens, 0) AS consult_rate,
               r.status
        FROM runs r LEFT JOIN agg a ON a.run_id = r.run_id
    """,
    "pair_cof": """
        SELECT r.llm, r.slm,
               ml.params AS llm_params, ms.params AS slm_params,
               CAST(ml.params AS DOUBLE) / ms.params AS param_ratio,
               r.method, r.router, r.dataset,
               count(*) AS runs,
               CAST(sum(c.tokens) AS BIGINT) AS tokens,
               CAST(sum(c.mismatches) AS BIGINT) AS mismatches,
               CAST(sum(c.mismatches) AS DOUBLE) / nullif(sum(c.tokens), 0) AS cof
        FROM runs r
        JOIN run_cof c ON c.run_id = r.run_id
        JOIN models ml ON ml.name = r.llm
        JOIN models ms ON ms.name = r.slm
        WHERE r.status = 'complete'
        GROUP BY r.llm, r.slm, ml.params, ms.params, r.method, r.router, r.dataset
    """,
    "position_profile": """
        WITH agg AS (
            SELECT run_id,
                   least(CAST(floor(rel_pos * 10) AS INTEGER), 9) AS bin,
                   count(*) AS tokens,
                   sum(CAST(mismatch AS BIGINT)) AS mismatches
            FROM token_events GROUP BY ALL
        )
        SELECT run_id, bin,
               CAST(tokens AS BIGINT) AS tokens,
               CAST(mismatches AS BIGINT) AS mismatches,
               CAST(mismatches AS DOUBLE) / tokens AS mismatch_rate,
               CAST(mismatches AS DOUBLE) / nullif(sum(mismatches) OVER (PARTITION BY run_id), 0)
                   AS mismatch_share
        FROM agg
    """,
    "entropy_profile": f"""
        WITH agg AS (
            SELECT run_id,
                   least(CAST(floor(s1_entropy / {ENTROPY_BIN_WIDTH}) AS INTEGER), {ENTROPY_BINS - 1}) AS bin,
                   count(*) AS tokens,
                   sum(CAST(mismatch AS BIGINT)) AS mismatches
            FROM token_events GROUP BY ALL
        )
        SELECT run_id, bin,
               bin * {ENTROPY_BIN_WIDTH} AS lo,
               CASE WHEN bin = {ENTROPY_BINS - 1} THEN CAST('inf' AS DOUBLE)
                    ELSE (bin + 1) * {ENTROPY_BIN_WIDTH} END AS hi,
               CAST(tokens AS BIGINT) AS tokens,
               CAST(mismatches AS BIGINT) AS mismatches,
               CAST(mismatches AS DOUBLE) / tokens AS mismatch_rate
        FROM agg
    """,
    "run_accuracy": """
        SELECT run_id,
               count(*) AS samples,
               count(correct) AS checked,
               CAST(sum(CAST(correct AS INTEGER)) AS BIGINT) AS correct,
               avg(CAST(correct AS DOUBLE)) AS accuracy
        FROM samples GROUP BY run_id
    """,
}


def upgrade() -> None:
    op.execute(sa.schema.CreateSequence(sa.Sequence("runs_run_id_seq", start=1)))
    op.create_table(
        "models",
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("params", sa.BigInteger(), nullable=False),
        sa.Column("architecture", sa.Text(), nullable=True),
        sa.Column("vocab_size", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_models")),
    )
    op.create_table(
        "runs",
        sa.Column(
            "run_id", sa.BigInteger(), server_default=sa.text("nextval('runs_run_id_seq')"), nullable=False
        ),
        sa.Column("run_key", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("finished_at", sa.DateTime(), nullable=True),
        sa.Column("llm", sa.Text(), nullable=False),
        sa.Column("slm", sa.Text(), nullable=False),
        sa.Column("slm_tuned", sa.Text(), nullable=True),
        sa.Column("method", sa.Text(), nullable=False),
        sa.Column("router", sa.Text(), nullable=False),
        sa.Column("threshold", sa.Double(), nullable=True),
        sa.Column("dataset", sa.Text(), nullable=False),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("n_samples", sa.Integer(), nullable=False),
        sa.Column("seed", sa.BigInteger(), nullable=False),
        sa.Column("temperature", sa.Double(), nullable=False),
        sa.Column("top_p", sa.Double(), nullable=False),
        sa.Column("device", sa.Text(), nullable=False),
        sa.Column("dtype", sa.Text(), nullable=False),
        sa.Column("settings", sa.Text(), nullable=False),
        sa.Column("wall_s", sa.Double(), nullable=True),
        sa.Column("tokens_per_s", sa.Double(), nullable=True),
        sa.PrimaryKeyConstraint("run_id", name=op.f("pk_runs")),
    )
    op.create_table(
        "samples",
        sa.Column("run_id", sa.BigInteger(), nullable=False),
        sa.Column("sample_id", sa.Integer(), nullable=False),
        sa.Column("item_id", sa.Text(), nullable=False),
        sa.Column("prompt", sa.Text(), nullable=False),
        sa.Column("output", sa.Text(), nullable=False),
        sa.Column("n_tokens", sa.Integer(), nullable=False),
        sa.Column("prompt_tokens", sa.Integer(), nullable=False),
        sa.Column("stop_reason", sa.Text(), nullable=False),
        sa.Column("reference", sa.Text(), nullable=True),
        sa.Column("correct", sa.Boolean(), nullable=True),
    )
    op.create_table(
        "token_events",
        sa.Column("run_id", sa.BigInteger(), nullable=False),
        sa.Column("sample_id", sa.Integer(), nullable=False),
        sa.Column("step", sa.Integer(), nullable=False),
        sa.Column("rel_pos", sa.Float(), nullable=False),
        sa.Column("token_id", sa.Integer(), nullable=False),
        sa.Column("s1_token_id", sa.Integer(), nullable=False),
        sa.Column("s1_prob", sa.Float(), nullable=False),
        sa.Column("s1_entropy", sa.Float(), nullable=False),
        sa.Column("s1_margin", sa.Float(), nullable=False),
        sa.Column("s2_token_id", sa.Integer(), nullable=False),
        sa.Column("llm_token_id", sa.Integer(), nullable=False),
        sa.Column("llm_prob", sa.Float(), nullable=False),
        sa.Column("llm_entropy", sa.Float(), nullable=False),
        sa.Column("llm_prob_s1_token", sa.Float(), nullable=False),
        sa.Column("consulted", sa.Boolean(), nullable=False),
        sa.Column("mismatch", sa.Boolean(), nullable=False),
    )
    op.create_table(
        "ingested_shards",
        sa.Column("shard", sa.Text(), nullable=False),
        sa.Column("run_id", sa.BigInteger(), nullable=False),
        sa.Column("events", sa.BigInteger(), nullable=False),
        sa.Column("samples", sa.Integer(), nullable=False),
        sa.Column("ingested_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("shard", name=op.f("pk_ingested_shards")),
    )
    for name, sql in VIEWS.items():
        op.execute(f"CREATE VIEW {name} AS {sql}")


def downgrade() -> None:
    for name in reversed(list(VIEWS)):
        op.execute(f"DROP VIEW IF EXISTS {name}")
    for table in ("ingested_shards", "token_events", "samples", "runs", "models"):
        op.drop_table(table)
    op.execute(sa.schema.DropSequence(sa.Sequence("runs_run_id_seq")))
