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
from typing import Any

import numpy as np
import numpy.typing as npt
import polars as pl
from scipy import special

from analytics.frames import Col, FrameSchema
from analytics.source import (
    AnalyticsError,
    Filters,
    Source,
    check_group_by,
    group_select,
    query_arrays,
    run_column_dtype,
    runs_where,
)

DEFAULT_GROUP_BY: tuple[str, ...] = ("run_id",)
FloatArray = npt.NDArray[np.float64]


def sample_stats_sql(group_by: Sequence[str], filters: Filters | None) -> tuple[str, list[object]]:
    """SQL reducing the per-run sums over samples (`sample_moments`) to sums over a group's samples, one row
    per group: the per-sample CoF's mean and standard deviation from its Σ r and Σ r² (the deviations' sum of
    squares Σ r² − (Σ r)²/k, 0 where within rounding of it)."""
    cols = check_group_by(group_by)
    where, params = runs_where(filters)
    out = ", ".join(f'"{c}"' for c in cols)
    k, r, rr = "sum(s.samples)", "sum(s.r)", "sum(s.r_r)"
    # Samples all alike give Σ r² − (Σ r)²/k = 0 but for rounding (up to ~k·eps·Σ r²): 0 below 4.5·k·eps·Σ r²,
    # as DuckDB's stddev_samp of the samples gives (a spread that small is below what the sums resolve).
    deviations = f"{rr} - {r} * {r} / {k}"
    sd = f"CASE WHEN {deviations} <= {k} * 1e-15 * {rr} THEN 0 ELSE sqrt(({deviations}) / ({k} - 1)) END"
    # The join with the runs in scope is the only filter (a semi-join on the same scope as well planned and
    # ran the scope twice).
    sql = f"""
        SELECT {group_select(cols)},
               CAST({k} AS BIGINT) AS samples,
               CAST(sum(s.tokens) AS BIGINT) AS tokens,
               CAST(sum(s.mismatches) AS BIGINT) AS mismatches,
               CAST(sum(s.consulted) AS BIGINT) AS consulted,
               {r} / {k} AS cof_mean,
               CASE WHEN {k} > 1 THEN {sd} END AS cof_sd,
               CAST(sum(s.m_m) AS DOUBLE) AS m_sq,
               CAST(sum(s.m_n) AS DOUBLE) AS mn,
               CAST(sum(s.n_n) AS DOUBLE) AS n_sq
        FROM sample_moments s JOIN runs r ON r.run_id = s.run_id
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


def _t_multiplier(samples: FloatArray, confidence: float) -> FloatArray:
    """t quantile of `confidence` with samples − 1 degrees of freedom (NaN below two samples)."""
    with np.errstate(invalid="ignore"):
        # scipy.stats.t.ppf's own computation, without its argument checks (0.3 ms a call)
        t_mult = special.stdtrit(np.maximum(samples - 1, 1), 0.5 + confidence / 2)
    return np.where(samples > 1, t_mult, np.nan)


def _expit(x: FloatArray) -> FloatArray:
    return 1 / (1 + np.exp(-x))


def _column(sums: pl.DataFrame, name: str) -> FloatArray:
    """A column of `sums` as floats, null as NaN (polars' own NumPy view: 2 µs, a cast and fill 170)."""
    return np.asarray(sums[name].to_numpy(), dtype=np.float64)


def with_intervals(sums: pl.DataFrame, confidence: float = 0.95) -> pl.DataFrame:
    """Add pooled CoF with its ratio-estimator interval, the design effect, the per-sample mean's t interval
    and the consult rate (intervals clipped to [0, 1]; null where undefined). `sums` needs samples, tokens,
    mismatches, consulted, cof_mean, cof_sd and the per-sample sums m_sq = Σ m², mn = Σ m·n, n_sq = Σ n².
    (NumPy on a few group rows: a tenth of the time of the same expressions in polars.)"""
    if not 0 < confidence < 1:
        raise AnalyticsError(f"confidence must lie in (0, 1), got {confidence}")
    sums = sums.with_columns(pooled_cof())
    k, tokens, r, consulted, cof_mean, cof_sd, m_sq, mn, n_sq = (
        _column(sums, c)
        for c in ("samples", "tokens", "cof", "consulted", "cof_mean", "cof_sd", "m_sq", "mn", "n_sq")
    )
    t_mult = _t_multiplier(k, confidence)
    with np.errstate(divide="ignore", invalid="ignore"):
        # Σ (m_i − R n_i)² expanded, so the per-sample rows stay in DuckDB; clipped at 0 against rounding.
        resid_sq = np.maximum(m_sq - 2 * r * mn + r * r * n_sq, 0.0)
        pooled_se = np.sqrt(resid_sq / (k * (k - 1))) / (tokens / k)
        binomial_var = r * (1 - r) / tokens
        mean_half = cof_sd / np.sqrt(k) * t_mult
        logit_half = pooled_se / (r * (1 - r)) * t_mult
        logit = np.log(r / (1 - r))
        inside = (r > 0) & (r < 1)
        # at 0 or 1 every sample agrees (se = 0): the interval is the point; one sample: none (NaN: null)
        edge = np.where(np.isnan(t_mult), np.nan, r)
        added = {
            "cof_lo": np.where(inside, _expit(logit - logit_half), edge),
            "cof_hi": np.where(inside, _expit(logit + logit_half), edge),
            "design_effect": np.where((binomial_var > 0) & (k > 1), pooled_se**2 / binomial_var, np.nan),
            "cof_mean_lo": np.clip(cof_mean - mean_half, 0.0, 1.0),
            "cof_mean_hi": np.clip(cof_mean + mean_half, 0.0, 1.0),
            "consult_rate": consulted / tokens,
        }
    columns = [pl.Series(name, v, dtype=pl.Float64, nan_to_null=True) for name, v in added.items()]
    return sums.drop("m_sq", "mn", "n_sq").with_columns(columns)


def collaboration_frequency(
    source: Source,
    group_by: Sequence[str] = DEFAULT_GROUP_BY,
    *,
    filters: Filters | None = None,
    confidence: float = 0.95,
) -> pl.DataFrame:
    """CoF per group of runs: pooled (mismatches / tokens) with the ratio estimator's interval and the design
    effect, and the mean over samples with its t interval (see the module docstring)."""
    cols = check_group_by(group_by)
    sql, params = sample_stats_sql(cols, filters)
    found = query_arrays(source, sql, params)
    sums = pl.DataFrame([_series(name, values) for name, values in found.items()])
    return OUTPUT.select(with_intervals(sums.cast({c: run_column_dtype(c) for c in cols}), confidence), cols)


def _series(name: str, values: npt.NDArray[Any]) -> pl.Series:
    """A column of `fetchnumpy()` (a masked array where it has nulls) as a polars Series."""
    if values.dtype == object:  # text: str, None where null (a group column: cast to its type after)
        return pl.Series(name, values.tolist())
    if isinstance(values, np.ma.MaskedArray):  # None where masked, typed even when every value is
        return pl.Series(name, values.tolist(), dtype=pl.Series(values.data).dtype)
    return pl.Series(name, values)
