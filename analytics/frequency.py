"""Collaboration frequency (CoF = mismatches / tokens) by any grouping of runs, with two labelled intervals.

Two numbers, each with its own interval (the sample is the unit: tokens of one sample are not independent):

- `cof`, the pooled rate R̂ = Σ mismatches / Σ tokens, with `cof_lo`/`cof_hi`: a ratio estimator's
  interval by the delta method over the k samples, var(R̂) = Σ (m_i − R̂·n_i)² / (k(k − 1)·n̄²), taken on
  the logit scale (se / (R̂(1 − R̂))) with Student's t(k − 1) and mapped back, so it stays inside [0, 1]
  and follows the skew of a small rate (on the raw scale it covers 89–93% where samples differ strongly;
  on the logit scale 93–95%, see tests/analytics/test_frequency.py);
- `cof_mean`, the mean of the per-sample CoF, with `cof_mean_lo`/`cof_mean_hi`: its t interval.

`design_effect` is the pooled rate's variance over the variance it would have if the tokens were
independent (R̂(1 − R̂) / Σ n_i): how many times fewer tokens the samples are worth.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import polars as pl
from scipy import stats

from analytics.frames import Col, FrameSchema
from analytics.source import (
    AnalyticsError,
    Filters,
    Source,
    check_group_by,
    group_select,
    query,
    runs_where,
)

DEFAULT_GROUP_BY: tuple[str, ...] = ("run_id",)


def sample_stats_sql(group_by: Sequence[str], filters: Filters | None) -> tuple[str, list[object]]:
    """SQL reducing the per-sample summary (`sample_sums`) to sums over samples, one row per group."""
    cols = check_group_by(group_by)
    where, params = runs_where(filters)
    out = ", ".join(f'"{c}"' for c in cols)
    # The join with the runs in scope is the only filter: a semi-join of the samples on the same scope as
    # well planned and ran the scope twice (2 ms of 10 at 10 M events).
    sql = f"""
        SELECT {group_select(cols)},
               CAST(count(*) AS BIGINT) AS samples,
               CAST(sum(s.tokens) AS BIGINT) AS tokens,
               CAST(sum(s.mismatches) AS BIGINT) AS mismatches,
               CAST(sum(s.consulted) AS BIGINT) AS consulted,
               avg(CAST(s.mismatches AS DOUBLE) / s.tokens) AS cof_mean,
               stddev_samp(CAST(s.mismatches AS DOUBLE) / s.tokens) AS cof_sd,
               sum(CAST(s.mismatches AS DOUBLE) * s.mismatches) AS m_sq,
               sum(CAST(s.mismatches AS DOUBLE) * s.tokens) AS mn,
               sum(CAST(s.tokens AS DOUBLE) * s.tokens) AS n_sq
        FROM sample_sums s JOIN runs r ON r.run_id = s.run_id
        {where}
        GROUP BY ALL
        ORDER BY {out}
    """
    return sql, params


def pooled_cof() -> pl.Expr:
    """CoF of a group's summed `mismatches` and `tokens`: the `run_cof` view's definition, applied to a group
    of runs (the view holds it per run)."""
    return (pl.col("mismatches") / pl.col("tokens")).alias("cof")


# What each interval is for, as printed beside it (the headline, the report, the API's field descriptions).
POOLED_INTERVAL = "pooled CoF (Σ mismatches / Σ tokens), ratio-estimator interval: delta method over samples"
MEAN_INTERVAL = "mean of the per-sample CoF, t interval over samples"
# The columns `collaboration_frequency` returns after its group-by columns.
OUTPUT = FrameSchema.of(
    samples=Col(int),
    tokens=Col(int),
    mismatches=Col(int),
    consulted=Col(int),
    cof=Col(float, "pooled: mismatches / tokens"),
    cof_lo=Col(float, f"{POOLED_INTERVAL}, at `confidence`"),
    cof_hi=Col(float),
    design_effect=Col(
        float, "variance of the pooled CoF over the variance it would have with independent tokens"
    ),
    cof_mean=Col(float, "mean of the per-sample CoF"),
    cof_sd=Col(float, "standard deviation of the per-sample CoF"),
    cof_mean_lo=Col(float, f"{MEAN_INTERVAL}, at `confidence`"),
    cof_mean_hi=Col(float),
    consult_rate=Col(float, "consulted / tokens"),
)


def _t_multiplier(samples: pl.Series, confidence: float) -> pl.Series:
    """t quantile of `confidence` with samples − 1 degrees of freedom (null below two samples)."""
    n = samples.to_numpy().astype(float)
    with np.errstate(invalid="ignore"):
        t_mult = np.where(n > 1, stats.t.ppf(0.5 + confidence / 2, np.maximum(n - 1, 1)), np.nan)
    return pl.Series("t_mult", t_mult, dtype=pl.Float64).fill_nan(None)


def _expit(x: pl.Expr) -> pl.Expr:
    return 1 / (1 + (-x).exp())


def with_intervals(sums: pl.DataFrame, confidence: float = 0.95) -> pl.DataFrame:
    """Add pooled CoF with its ratio-estimator interval, the design effect, the per-sample mean's t interval
    and the consult rate (intervals clipped to [0, 1]). `sums` needs samples, tokens, mismatches,
    consulted, cof_mean, cof_sd and the per-sample sums m_sq = Σ m², mn = Σ m·n, n_sq = Σ n²."""
    if not 0 < confidence < 1:
        raise AnalyticsError(f"confidence must lie in (0, 1), got {confidence}")
    k = pl.col("samples").cast(pl.Float64)
    r = pl.col("cof")
    # Σ (m_i − R n_i)² expanded, so the per-sample rows stay in DuckDB; clipped at 0 against rounding.
    resid_sq = (pl.col("m_sq") - 2 * r * pl.col("mn") + r * r * pl.col("n_sq")).clip(0.0)
    n_bar = pl.col("tokens") / k
    pooled_se = (resid_sq / (k * (k - 1))).sqrt() / n_bar
    binomial_var = r * (1 - r) / pl.col("tokens")
    mean_half = pl.col("cof_sd") / k.sqrt() * pl.col("t_mult")
    logit_half = pooled_se / (r * (1 - r)) * pl.col("t_mult")
    inside = (r > 0) & (r < 1)
    logit = (r / (1 - r)).log()
    # at 0 or 1 every sample agrees (se = 0): the interval is the point; one sample: none
    edge = pl.when(pl.col("t_mult").is_not_null()).then(r)
    return (
        sums.with_columns(_t_multiplier(sums["samples"], confidence), pooled_cof())
        .with_columns(
            pl.when(inside).then(_expit(logit - logit_half)).otherwise(edge).alias("cof_lo"),
            pl.when(inside).then(_expit(logit + logit_half)).otherwise(edge).alias("cof_hi"),
            pl.when((binomial_var > 0) & (k > 1)).then(pooled_se**2 / binomial_var).alias("design_effect"),
            (pl.col("cof_mean") - mean_half).clip(0.0, 1.0).alias("cof_mean_lo"),
            (pl.col("cof_mean") + mean_half).clip(0.0, 1.0).alias("cof_mean_hi"),
            (pl.col("consulted") / pl.col("tokens")).alias("consult_rate"),
        )
        .drop("t_mult", "m_sq", "mn", "n_sq")
    )


def collaboration_frequency(
    source: Source,
    group_by: Sequence[str] = DEFAULT_GROUP_BY,
    *,
    filters: Filters | None = None,
    confidence: float = 0.95,
) -> pl.DataFrame:
    """CoF per group of runs: pooled (mismatches / tokens) with the ratio estimator's interval and the design
    effect, and the mean over samples with its t interval (see the module docstring)."""
    sql, params = sample_stats_sql(group_by, filters)
    sums = query(source, sql, params)
    return OUTPUT.select(with_intervals(sums, confidence), check_group_by(group_by))
