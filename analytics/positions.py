"""Where interventions fall: mismatch share by relative-position decile, and the early share vs uniform."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import polars as pl
from scipy import stats

from analytics.source import (
    Filters,
    Source,
    check_group_by,
    events_where,
    group_select,
    profile_sums,
    query,
    runs_where,
)

Alternative = Literal["greater", "less", "two-sided"]


def position_profile(
    source: Source, group_by: Sequence[str] = ("run_id",), *, filters: Filters | None = None
) -> pl.DataFrame:
    """Per group and relative-position decile: tokens, mismatch rate, share of the group's mismatches."""
    cols = check_group_by(group_by)
    sums = profile_sums(source, "position_profile", ["bin"], cols, filters)
    return with_shares(sums, cols)


def with_shares(sums: pl.DataFrame, keys: Sequence[str]) -> pl.DataFrame:
    """Add mismatch rate, mismatch share and token share (the uniform baseline) within each group."""
    over = list(keys)
    return sums.with_columns(
        (pl.col("mismatches") / pl.col("tokens")).alias("mismatch_rate"),
        pl.when(pl.col("mismatches").sum().over(over) > 0)
        .then(pl.col("mismatches") / pl.col("mismatches").sum().over(over))
        .alias("mismatch_share"),
        (pl.col("tokens") / pl.col("tokens").sum().over(over)).alias("token_share"),
    )


def _early_condition(k: int | None, fraction: float | None) -> tuple[str, list[object], str]:
    if k is not None and fraction is not None:
        raise ValueError("give either k (first k tokens) or fraction (first share of each sample), not both")
    if k is not None:
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        return "e.step < ?", [k], f"first {k} tokens"
    frac = 0.1 if fraction is None else fraction
    if not 0 < frac < 1:
        raise ValueError(f"fraction must lie in (0, 1), got {frac}")
    return "e.rel_pos < ?", [frac], f"first {frac:.0%} of tokens"


def early_share(
    source: Source,
    group_by: Sequence[str] = ("run_id",),
    *,
    k: int | None = None,
    fraction: float | None = None,
    filters: Filters | None = None,
    alternative: Alternative = "greater",
) -> pl.DataFrame:
    """Share of mismatches in the first k tokens (or first fraction, default 10%) vs the uniform baseline."""
    cond, cond_params, label = _early_condition(k, fraction)
    cols = check_group_by(group_by)
    out = ", ".join(f'"{c}"' for c in cols)
    ev_where, ev_params = events_where(filters)
    where, params = runs_where(filters)
    sums = query(
        source,
        f"""WITH a AS (
                SELECT e.run_id, count(*) AS tokens, count_if(e.mismatch) AS mismatches,
                       count_if({cond}) AS early_tokens,
                       count_if(e.mismatch AND {cond}) AS early_mismatches
                FROM token_events e {ev_where} GROUP BY e.run_id
            )
            SELECT {group_select(cols)},
                   CAST(sum(a.tokens) AS BIGINT) AS tokens,
                   CAST(sum(a.mismatches) AS BIGINT) AS mismatches,
                   CAST(sum(a.early_tokens) AS BIGINT) AS early_tokens,
                   CAST(coalesce(sum(a.early_mismatches), 0) AS BIGINT) AS early_mismatches
            FROM a JOIN runs r ON r.run_id = a.run_id {where}
            GROUP BY ALL ORDER BY {out}""",
        [*cond_params, *cond_params, *ev_params, *params],
    )
    return early_share_test(sums, alternative).with_columns(pl.lit(label).alias("window"))


def early_share_test(sums: pl.DataFrame, alternative: Alternative = "greater") -> pl.DataFrame:
    """Mismatch share in the early window, its uniform baseline (token share), ratio and binomial p-value."""
    p_values = [
        _binom_p(int(em), int(m), et / t if t else 0.0, alternative)
        for em, m, et, t in sums.select(
            "early_mismatches", "mismatches", "early_tokens", "tokens"
        ).iter_rows()
    ]
    any_mismatch = pl.col("mismatches") > 0
    share = pl.col("early_mismatches") / pl.col("mismatches")
    return sums.with_columns(
        pl.when(any_mismatch).then(share).alias("mismatch_share"),
        (pl.col("early_tokens") / pl.col("tokens")).alias("baseline_share"),
        pl.when(any_mismatch & (pl.col("early_tokens") > 0))
        .then(share / (pl.col("early_tokens") / pl.col("tokens")))
        .alias("enrichment"),
        pl.Series("p_value", p_values, dtype=pl.Float64),
    )


def _binom_p(successes: int, trials: int, p0: float, alternative: Alternative) -> float | None:
    """Exact binomial test of the early mismatch count against the token share (None when undefined)."""
    if trials == 0 or not 0 < p0 < 1:
        return None
    return float(stats.binomtest(successes, trials, p0, alternative=alternative).pvalue)
