"""Collaboration frequency (CoF = mismatches / tokens) by any grouping of runs, with sample intervals."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import polars as pl
from scipy import stats

from analytics.source import Filters, Source, check_group_by, events_where, group_select, query, runs_where

DEFAULT_GROUP_BY: tuple[str, ...] = ("run_id",)


def sample_stats_sql(group_by: Sequence[str], filters: Filters | None) -> tuple[str, list[object]]:
    """SQL reducing the per-sample summary (`sample_sums`) to sums over samples, one row per group."""
    cols = check_group_by(group_by)
    ev_where, ev_params = events_where(filters)
    where, params = runs_where(filters)
    out = ", ".join(f'"{c}"' for c in cols)
    sql = f"""
        WITH s AS (
            SELECT e.run_id, e.sample_id, e.tokens, e.mismatches, e.consulted
            FROM sample_sums e {ev_where}
        )
        SELECT {group_select(cols)},
               CAST(count(*) AS BIGINT) AS samples,
               CAST(sum(s.tokens) AS BIGINT) AS tokens,
               CAST(sum(s.mismatches) AS BIGINT) AS mismatches,
               CAST(sum(s.consulted) AS BIGINT) AS consulted,
               avg(CAST(s.mismatches AS DOUBLE) / s.tokens) AS cof_mean,
               stddev_samp(CAST(s.mismatches AS DOUBLE) / s.tokens) AS cof_sd
        FROM s JOIN runs r ON r.run_id = s.run_id
        {where}
        GROUP BY ALL
        ORDER BY {out}
    """
    return sql, ev_params + params


def pooled_cof() -> pl.Expr:
    """CoF of a group's summed `mismatches` and `tokens`: the `run_cof` view's definition, applied to a group
    of runs (the view holds it per run)."""
    return (pl.col("mismatches") / pl.col("tokens")).alias("cof")


def with_intervals(sums: pl.DataFrame, confidence: float = 0.95) -> pl.DataFrame:
    """Add pooled CoF, consult rate and a t interval of the mean per-sample CoF (clipped to [0, 1])."""
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence}")
    n = sums["samples"].to_numpy().astype(float)
    with np.errstate(invalid="ignore"):
        t_mult = np.where(n > 1, stats.t.ppf(0.5 + confidence / 2, np.maximum(n - 1, 1)), np.nan)
    half = pl.col("cof_sd") / pl.col("samples").cast(pl.Float64).sqrt() * pl.col("t_mult")
    return (
        sums.with_columns(pl.Series("t_mult", t_mult, dtype=pl.Float64).fill_nan(None))
        .with_columns(
            pooled_cof(),
            (pl.col("consulted") / pl.col("tokens")).alias("consult_rate"),
            (pl.col("cof_mean") - half).clip(0.0, 1.0).alias("ci_lo"),
            (pl.col("cof_mean") + half).clip(0.0, 1.0).alias("ci_hi"),
        )
        .drop("t_mult")
    )


def collaboration_frequency(
    source: Source,
    group_by: Sequence[str] = DEFAULT_GROUP_BY,
    *,
    filters: Filters | None = None,
    confidence: float = 0.95,
) -> pl.DataFrame:
    """CoF per group of runs: pooled (mismatches/tokens) and mean over samples with a t interval."""
    sql, params = sample_stats_sql(group_by, filters)
    sums = query(source, sql, params)
    cols = [*check_group_by(group_by)]
    order = ["samples", "tokens", "mismatches", "consulted", "cof", "cof_mean", "cof_sd", "ci_lo", "ci_hi"]
    return with_intervals(sums, confidence).select(*cols, *order, "consult_rate")
