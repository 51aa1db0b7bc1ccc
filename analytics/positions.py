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
from warehouse.summaries import REL_POS_CELLS

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


def _early_cells(k: int | None, fraction: float | None) -> tuple[str, int] | None:
    """The `histogram_sums` feature and cell bound of the early window, None if off the summary's grid."""
    if k is not None:
        return "step", k
    cells = (0.1 if fraction is None else fraction) * REL_POS_CELLS
    return ("rel_pos", round(cells)) if abs(cells - round(cells)) < 1e-9 else None


def _early_sums_sql(
    k: int | None, fraction: float | None, filters: Filters | None
) -> tuple[str, list[object]]:
    """Per run: tokens, mismatches and the early window's share of them (from summaries when on the grid)."""
    cond, cond_params, _ = _early_condition(k, fraction)
    ev_where, ev_params = events_where(filters)
    cells = _early_cells(k, fraction)
    if cells is None:  # a fraction off the 0.001 grid: count it from the events
        sql = f"""SELECT e.run_id, count(*) AS tokens, count_if(e.mismatch) AS mismatches,
                         count_if({cond}) AS early_tokens, count_if(e.mismatch AND {cond}) AS early_mismatches
                  FROM token_events e {ev_where} GROUP BY e.run_id"""
        return sql, [*cond_params, *cond_params, *ev_params]
    sql = f"""SELECT e.run_id, e.tokens, e.mismatches,
                     coalesce(w.tokens, 0) AS early_tokens, coalesce(w.mismatches, 0) AS early_mismatches
              FROM run_sums e LEFT JOIN (
                  SELECT run_id, sum(tokens) AS tokens, sum(mismatches) AS mismatches FROM histogram_sums
                  WHERE feature = ? AND cell < ? GROUP BY run_id
              ) w ON w.run_id = e.run_id {ev_where}"""
    return sql, [*cells, *ev_params]


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
    _, _, label = _early_condition(k, fraction)
    cols = check_group_by(group_by)
    out = ", ".join(f'"{c}"' for c in cols)
    per_run, run_params = _early_sums_sql(k, fraction, filters)
    where, params = runs_where(filters)
    sums = query(
        source,
        f"""WITH a AS ({per_run})
            SELECT {group_select(cols)},
                   CAST(sum(a.tokens) AS BIGINT) AS tokens,
                   CAST(sum(a.mismatches) AS BIGINT) AS mismatches,
                   CAST(sum(a.early_tokens) AS BIGINT) AS early_tokens,
                   CAST(coalesce(sum(a.early_mismatches), 0) AS BIGINT) AS early_mismatches
            FROM a JOIN runs r ON r.run_id = a.run_id {where}
            GROUP BY ALL ORDER BY {out}""",
        [*run_params, *params],
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
