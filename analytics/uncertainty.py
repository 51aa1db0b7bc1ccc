"""Does System 1's uncertainty predict a mismatch? Correlations, AUROC and mismatch rate by entropy bin.

Every predictor is oriented so that a larger value means a less certain System 1: entropy, 1 − max
probability, 1 − margin. DuckDB reduces the token events (or, by default, the grid cells `histogram_sums`
holds) to a histogram per (group, predictor, value); polars reduces that to a handful of sums per group
(Mann–Whitney U with ties counted half, the tie term of the rank variance, and the moments for the
point-biserial correlation) and turns those into statistics. So AUROC over 100M events never brings the
events into Python, and on the grid it reads one query of at most a few thousand rows per run.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import polars as pl

from analytics.frames import Col, FrameSchema
from analytics.source import (
    AnalyticsError,
    Filters,
    Source,
    check_group_by,
    connect,
    events_where,
    group_select,
    profile_sums,
    query,
    runs_where,
)
from warehouse.summaries import PREDICTOR_GRID

# name -> (SQL expression over token_events columns, histogram cells per unit when not exact); the grid is
# the warehouse's, whose `histogram_sums` table holds each run's counts per cell, written at ingest.
PREDICTORS: dict[str, tuple[str, int]] = dict(PREDICTOR_GRID)
STAT_SUMS = ("tokens", "mismatches", "u", "ties", "sx", "sxx", "sxy")
# The columns `mismatch_predictors` returns after its group-by columns.
PREDICTOR_STATS = FrameSchema.of(
    predictor=Col(str, "larger = less certain System 1"),
    tokens=Col(int),
    mismatches=Col(int),
    auroc=Col(float, "P(the predictor is larger at a mismatch than at a match): area under the ROC curve"),
    spearman=Col(float),
    point_biserial=Col(float),
)
# The columns `mismatch_by_entropy_bin` returns after its group-by columns.
ENTROPY_BINS = FrameSchema.of(
    bin=Col(int),
    lo=Col(float),
    hi=Col(float, "null for the open last bin"),
    tokens=Col(int),
    mismatches=Col(int),
    mismatch_rate=Col(float),
)


def check_predictors(predictors: Sequence[str]) -> tuple[str, ...]:
    """Validate predictor names."""
    names = (predictors,) if isinstance(predictors, str) else tuple(predictors)
    unknown = [p for p in names if p not in PREDICTORS]
    if unknown or not names:
        raise AnalyticsError(f"unknown predictor(s) {unknown or names}; choose from: {', '.join(PREDICTORS)}")
    return names


def histogram_sql(
    predictors: Sequence[str], group_by: Sequence[str], filters: Filters | None, exact: bool
) -> tuple[str, list[object]]:
    """SQL giving, per group, predictor and value `v` (a grid cell, or the exact value): tokens `n` and
    mismatches `pos`."""
    cols = check_group_by(group_by)
    where, params = runs_where(filters)
    if exact:  # raw values: a scan of the events (of the runs in scope) per predictor
        ev_where, ev_params = events_where(filters)
        hist = " UNION ALL ".join(
            f"""SELECT e.run_id, '{name}' AS predictor, CAST({PREDICTORS[name][0]} AS DOUBLE) AS v,
                       count(*) AS n, count_if(e.mismatch) AS pos
                FROM token_events e {ev_where} GROUP BY ALL"""
            for name in predictors
        )
        hist_params: list[object] = [p for _ in predictors for p in ev_params]
    else:  # the grid's cells, summed at ingest
        marks = ", ".join("?" for _ in predictors)
        hist = f"""SELECT run_id, feature AS predictor, cell AS v, tokens AS n, mismatches AS pos
                   FROM histogram_sums WHERE feature IN ({marks})"""
        hist_params = list(predictors)
    sql = f"""SELECT {group_select(cols)}, h.predictor, CAST(h.v AS DOUBLE) AS v,
                     CAST(sum(h.n) AS DOUBLE) AS n, CAST(sum(h.pos) AS DOUBLE) AS pos
              FROM ({hist}) h JOIN runs r ON r.run_id = h.run_id {where} GROUP BY ALL"""
    return sql, [*hist_params, *params]


def rank_sums(
    hist: pl.DataFrame, keys: Sequence[str], predictors: Sequence[str], exact: bool
) -> pl.DataFrame:
    """Per group and predictor (in the order given): Mann–Whitney U (ties count half), the rank tie term,
    and moments of x, from a `histogram_sql` frame (one row per group, predictor and value)."""
    over = [*keys, "predictor"]
    order = {p: i for i, p in enumerate(predictors)}
    scale = {p: 1.0 if exact else float(PREDICTORS[p][1]) for p in predictors}
    ranked = hist.with_columns(
        (pl.col("v") / pl.col("predictor").replace_strict(scale, return_dtype=pl.Float64)).alias("x"),
        pl.col("predictor").replace_strict(order, return_dtype=pl.Int64).alias("order"),
    ).sort(["order", *keys, "x"])
    # Each (group, predictor) is a run of rows in x order: numpy sums them (a polars window over the
    # groups took twice as long).
    first = ranked.select(pl.struct(over).rle_id().alias("seg"))["seg"].to_numpy().astype(np.int64)
    n, pos = ranked["n"].to_numpy(), ranked["pos"].to_numpy()
    x = ranked["x"].fill_null(0.0).to_numpy()  # a missing value ranks first and adds no moment
    neg = n - pos
    starts = np.flatnonzero(np.diff(first, prepend=-1))  # none for an empty histogram
    cum = np.cumsum(neg)
    neg_below = cum - neg - np.repeat(cum[starts] - neg[starts], np.diff(np.r_[starts, len(first)]))

    def total(values: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        return np.bincount(first, weights=values, minlength=len(starts)).astype(np.float64)

    return (
        ranked[starts]
        .select(*keys, "predictor")
        .with_columns(
            pl.Series("tokens", total(n)).cast(pl.Int64),
            pl.Series("mismatches", total(pos)).cast(pl.Int64),
            pl.Series("u", total(pos * (neg_below + 0.5 * neg))),
            pl.Series("ties", total(n * n * n - n)),
            pl.Series("sx", total(n * x)),
            pl.Series("sxx", total(n * x * x)),
            pl.Series("sxy", total(pos * x)),
        )
    )


def statistics_from_sums(sums: pl.DataFrame) -> pl.DataFrame:
    """AUROC, Spearman and point-biserial correlation from per-group rank and moment sums."""
    n = pl.col("tokens").cast(pl.Float64)
    n1 = pl.col("mismatches").cast(pl.Float64)
    n0 = n - n1
    auroc = pl.col("u") / (n1 * n0)
    rank_sum_pos = pl.col("u") + n1 * (n1 + 1) / 2  # Mann–Whitney: U = R1 − n1(n1+1)/2
    mean_rank_gap = rank_sum_pos / n1 - (n * (n + 1) / 2 - rank_sum_pos) / n0
    rank_var = (n * n - 1) / 12 - pl.col("ties") / (12 * n)  # population variance of mid-ranks
    p = n1 / n
    spearman = mean_rank_gap * (p * (1 - p)).sqrt() / rank_var.sqrt()
    cov = pl.col("sxy") / n - (pl.col("sx") / n) * p
    var_x = pl.col("sxx") / n - (pl.col("sx") / n) ** 2
    point_biserial = cov / (var_x * p * (1 - p)).sqrt()
    defined = (n1 > 0) & (n0 > 0)
    keys = [c for c in sums.columns if c not in STAT_SUMS]
    return sums.select(
        *keys,
        pl.col("tokens"),
        pl.col("mismatches"),
        pl.when(defined).then(auroc).alias("auroc"),
        pl.when(defined & (rank_var > 0)).then(spearman).alias("spearman"),
        pl.when(defined & (var_x > 0)).then(point_biserial).alias("point_biserial"),
    )


def mismatch_predictors(
    source: Source,
    group_by: Sequence[str] = ("run_id",),
    *,
    predictors: Sequence[str] = tuple(PREDICTORS),
    filters: Filters | None = None,
    exact: bool = False,
) -> pl.DataFrame:
    """Per group and predictor: AUROC, Spearman and point-biserial correlation with mismatch.

        `exact=False` ranks values on a grid (0.01 nats; 0.001 in probability): ties within a cell count half,
        which moves AUROC by about 1e-3 at most and keeps the histogram small on 100M events; the
        point-biserial correlation then uses cell centres (a change of order 1e-5). One query for all
    predictors (`exact`: one scan of the events per predictor).
    """
    names = check_predictors(predictors)
    cols = list(check_group_by(group_by))
    hist = query(source, *histogram_sql(names, cols, filters, exact))
    return PREDICTOR_STATS.select(statistics_from_sums(rank_sums(hist, cols, names, exact)), tuple(cols))


def mismatch_by_entropy_bin(
    source: Source, group_by: Sequence[str] = ("run_id",), *, filters: Filters | None = None
) -> pl.DataFrame:
    """Mismatch rate per System 1 entropy bin (the `entropy_profile` view, rolled up by group)."""
    sums = profile_sums(source, "entropy_profile", ["bin", "lo", "hi"], group_by, filters)
    rated = sums.with_columns(
        pl.col("lo", "hi").cast(pl.Float64),  # the view's bin * 0.5 is a DECIMAL: the edges are floats
        (pl.col("mismatches") / pl.col("tokens")).alias("mismatch_rate"),
    )
    return ENTROPY_BINS.select(rated, check_group_by(group_by))


def entropy_histogram(
    source: Source,
    group_by: Sequence[str] = ("run_id",),
    *,
    filters: Filters | None = None,
    bins: int = 40,
    upper: float | None = None,
) -> pl.DataFrame:
    """Entropy distributions of matched and mismatched tokens as densities over equal-width bins.

    Bins span [0, upper] (default: the largest entropy seen); larger values fall in the last bin.
    """
    if bins < 1:
        raise AnalyticsError("bins must be at least 1")
    cols = check_group_by(group_by)
    out = ", ".join(f'"{c}"' for c in cols)
    ev_where, ev_params = events_where(filters)
    where, params = runs_where(filters)
    with connect(source) as con:
        if upper is None:
            top = query(con, f"SELECT max(e.s1_entropy) AS m FROM token_events e {ev_where}", ev_params)
            upper = float(top["m"][0] or 0.0) or 1.0
        width = upper / bins
        counts = query(
            con,
            f"""WITH h AS (
                    SELECT e.run_id, e.mismatch,
                           least(greatest(CAST(floor(e.s1_entropy / ?) AS INTEGER), 0), ?) AS bin,
                           count(*) AS n
                    FROM token_events e {ev_where} GROUP BY ALL
                )
                SELECT {group_select(cols)}, h.mismatch, h.bin, CAST(sum(h.n) AS BIGINT) AS tokens
                FROM h JOIN runs r ON r.run_id = h.run_id {where}
                GROUP BY ALL ORDER BY {out}, h.mismatch, h.bin""",
            [width, bins - 1, *ev_params, *params],
        )
    return histogram_densities(counts, [*cols, "mismatch"], width)


def histogram_densities(counts: pl.DataFrame, keys: Sequence[str], width: float) -> pl.DataFrame:
    """Add bin edges and the density (count / (class total × width)) to a binned count frame."""
    total = pl.col("tokens").sum().over(list(keys))
    return counts.with_columns(
        (pl.col("bin") * width).alias("lo"),
        ((pl.col("bin") + 1) * width).alias("hi"),
        (pl.col("tokens") / (total * width)).alias("density"),
    )
