"""Summary tables written at ingest (per run, sample, position decile, entropy bin, histogram cell).

Creates them, fills them from the token events already in the file, and points the views `run_cof`,
`position_profile` and `entropy_profile` at them, so the views cost the same at any number of tokens. The
summing SQL is a copy of `warehouse/summaries.py` (a migration never imports the package); a test checks
that this backfill equals `python -m warehouse rebuild-summaries`.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ENTROPY_BIN_WIDTH = 0.5
ENTROPY_BINS = 12
COUNTS = "count(*) AS tokens, count_if(consulted) AS consulted, count_if(mismatch) AS mismatches"
TM = "count(*) AS tokens, count_if(mismatch) AS mismatches"
CELLS = {
    "entropy": "CAST((s1_entropy) * 100 AS INTEGER)",
    "one_minus_max_prob": "CAST((1 - s1_prob) * 1000 AS INTEGER)",
    "one_minus_margin": "CAST((1 - s1_margin) * 1000 AS INTEGER)",
    "step": "step",
    "rel_pos": "CAST(floor(CAST(rel_pos AS DOUBLE) * 1000) AS INTEGER)",
}
BACKFILL = {
    "run_sums": f"SELECT run_id, {COUNTS} FROM token_events GROUP BY run_id",
    "sample_sums": f"SELECT run_id, sample_id, {COUNTS} FROM token_events GROUP BY run_id, sample_id",
    "position_sums": f"SELECT run_id, least(CAST(floor(rel_pos * 10) AS INTEGER), 9) AS bin, {TM} "
    "FROM token_events GROUP BY ALL",
    "entropy_sums": f"SELECT run_id, least(CAST(floor(s1_entropy / {ENTROPY_BIN_WIDTH}) AS INTEGER), "
    f"{ENTROPY_BINS - 1}) AS bin, {TM} FROM token_events GROUP BY ALL",
    "histogram_sums": " UNION ALL ".join(
        f"SELECT run_id, '{name}' AS feature, {cell} AS cell, {TM} FROM token_events GROUP BY ALL"
        for name, cell in CELLS.items()
    ),
}

RUN_COF = """
    SELECT r.run_id,
           CAST(coalesce(a.tokens, 0) AS BIGINT) AS tokens,
           CAST(coalesce(a.consulted, 0) AS BIGINT) AS consulted,
           CAST(coalesce(a.mismatches, 0) AS BIGINT) AS mismatches,
           CAST(a.mismatches AS DOUBLE) / nullif(a.tokens, 0) AS cof,
           CAST(a.consulted AS DOUBLE) / nullif(a.tokens, 0) AS consult_rate,
           r.status
    FROM runs r LEFT JOIN {agg} a ON a.run_id = r.run_id
"""
RUN_AGG_0001 = """(
    SELECT run_id, count(*) AS tokens, sum(CAST(consulted AS BIGINT)) AS consulted,
           sum(CAST(mismatch AS BIGINT)) AS mismatches
    FROM token_events GROUP BY run_id
)"""
POSITION_PROFILE = """
    WITH agg AS {materialized} ({agg})
    SELECT run_id, bin,
           CAST(tokens AS BIGINT) AS tokens,
           CAST(mismatches AS BIGINT) AS mismatches,
           CAST(mismatches AS DOUBLE) / tokens AS mismatch_rate,
           CAST(mismatches AS DOUBLE) / nullif(sum(mismatches) OVER (PARTITION BY run_id), 0)
               AS mismatch_share
    FROM agg
"""
ENTROPY_PROFILE = f"""
    WITH agg AS ({{agg}})
    SELECT run_id, bin,
           bin * {ENTROPY_BIN_WIDTH} AS lo,
           CASE WHEN bin = {ENTROPY_BINS - 1} THEN CAST('inf' AS DOUBLE)
                ELSE (bin + 1) * {ENTROPY_BIN_WIDTH} END AS hi,
           CAST(tokens AS BIGINT) AS tokens,
           CAST(mismatches AS BIGINT) AS mismatches,
           CAST(mismatches AS DOUBLE) / tokens AS mismatch_rate
    FROM agg
"""
SUMS = "SELECT run_id, bin, tokens, mismatches FROM {table}"


def _sums_table(name: str, keys: list[sa.Column[object]], counts: tuple[str, ...]) -> None:
    op.create_table(
        name,
        *keys,
        *(sa.Column(c, sa.BigInteger(), nullable=False) for c in counts),
        sa.PrimaryKeyConstraint(*(k.name for k in keys), name=op.f(f"pk_{name}")),
    )


def upgrade() -> None:
    def key(name: str, type_: sa.types.TypeEngine[object]) -> sa.Column[object]:
        return sa.Column(name, type_, nullable=False, autoincrement=False)  # no SERIAL in DuckDB

    three, two = ("tokens", "consulted", "mismatches"), ("tokens", "mismatches")
    _sums_table("run_sums", [key("run_id", sa.BigInteger())], three)
    _sums_table("sample_sums", [key("run_id", sa.BigInteger()), key("sample_id", sa.Integer())], three)
    for name in ("position_sums", "entropy_sums"):
        _sums_table(name, [key("run_id", sa.BigInteger()), key("bin", sa.Integer())], two)
    histogram_keys = [key("run_id", sa.BigInteger()), key("feature", sa.Text()), key("cell", sa.Integer())]
    _sums_table("histogram_sums", histogram_keys, two)
    for table, select in BACKFILL.items():
        op.execute(f"INSERT INTO {table} BY NAME {select}")
    _views(
        RUN_COF.format(agg="run_sums"),
        "",
        SUMS.format(table="position_sums"),
        SUMS.format(table="entropy_sums"),
    )


def _views(run_cof: str, materialized: str, position_agg: str, entropy_agg: str) -> None:
    op.execute(f"CREATE OR REPLACE VIEW run_cof AS {run_cof}")
    position = POSITION_PROFILE.format(materialized=materialized, agg=position_agg)
    op.execute(f"CREATE OR REPLACE VIEW position_profile AS {position}")
    op.execute(f"CREATE OR REPLACE VIEW entropy_profile AS {ENTROPY_PROFILE.format(agg=entropy_agg)}")


def downgrade() -> None:
    _views(
        RUN_COF.format(agg=RUN_AGG_0001), "MATERIALIZED", BACKFILL["position_sums"], BACKFILL["entropy_sums"]
    )
    for table in ("histogram_sums", "entropy_sums", "position_sums", "sample_sums", "run_sums"):
        op.drop_table(table)
