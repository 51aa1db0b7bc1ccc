"""Offline router replay: what a threshold router would have consulted and caught on a recorded run.

The collector records System 2's choice (`s2_token_id`) for every token, consulted or not, so a token is a
"mismatch under replay" when s2_token_id ≠ s1_token_id. On an `always` run that is exactly what the run
would have done under the replayed router; on a routed run System 2's choice was recorded all the same,
but its context followed the original router's tokens, so replay is an approximation there.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt
import polars as pl

from analytics.source import AnalyticsError, Source, connect, query

RouterKind = Literal["max_prob", "margin", "entropy"]
# kind -> (feature column, consult when feature < τ ("below") or > τ ("above"))
ROUTERS: dict[str, tuple[str, str]] = {
    "max_prob": ("s1_prob", "below"),
    "margin": ("s1_margin", "below"),
    "entropy": ("s1_entropy", "above"),
}
DEFAULT_THRESHOLDS = 50


@dataclass(frozen=True)
class RouterChoice:
    """The threshold that catches the most mismatches within a consult budget."""

    router: str
    threshold: float
    consult_rate: float
    caught: float
    precision: float | None
    budget: float


def check_router(router: str) -> tuple[str, str]:
    """Feature column and direction of a router kind."""
    if router not in ROUTERS:
        raise AnalyticsError(f"unknown router {router!r}; replay supports: {', '.join(ROUTERS)}")
    return ROUTERS[router]


def feature_histogram(source: Source, run_id: int, router: str) -> pl.DataFrame:
    """Distinct feature values of one run with token and replay-mismatch counts, sorted by value."""
    column, _ = check_router(router)
    return query(
        source,
        f"""SELECT CAST({column} AS DOUBLE) AS value, CAST(count(*) AS BIGINT) AS tokens,
                   CAST(sum(CAST(s2_token_id <> s1_token_id AS INTEGER)) AS BIGINT) AS mismatches
            FROM token_events WHERE run_id = ? GROUP BY ALL ORDER BY value""",
        [run_id],
    )


def quantile_thresholds(hist: pl.DataFrame, n: int = DEFAULT_THRESHOLDS) -> npt.NDArray[np.float64]:
    """n thresholds at evenly spaced token quantiles of the feature (so consult rates spread evenly)."""
    if hist.height == 0:
        return np.empty(0)
    values = hist["value"].to_numpy()
    cum = np.cumsum(hist["tokens"].to_numpy())
    targets = np.linspace(0, cum[-1], n + 2)[1:-1]
    picks = values[np.minimum(np.searchsorted(cum, targets), len(values) - 1)]
    # both ends, so every router reaches "consult nothing" and "consult everything"
    ends = [np.nextafter(values[0], -np.inf), values[0], np.nextafter(values[-1], np.inf)]
    return np.unique(np.concatenate([ends, picks]))


def replay_histogram(hist: pl.DataFrame, router: str, thresholds: npt.ArrayLike) -> pl.DataFrame:
    """Replay one router over a feature histogram: consult rate, share of mismatches caught, precision."""
    _, direction = check_router(router)
    tau = np.sort(np.asarray(thresholds, dtype=float).ravel())
    values = hist["value"].to_numpy()
    cum_tok = np.concatenate([[0], np.cumsum(hist["tokens"].to_numpy())])
    cum_mis = np.concatenate([[0], np.cumsum(hist["mismatches"].to_numpy())])
    if direction == "below":  # consult when value < τ
        idx = np.searchsorted(values, tau, side="left")
        consulted, caught = cum_tok[idx], cum_mis[idx]
    else:  # consult when value > τ
        idx = np.searchsorted(values, tau, side="right")
        consulted, caught = cum_tok[-1] - cum_tok[idx], cum_mis[-1] - cum_mis[idx]
    frame = pl.DataFrame(
        {
            "router": [router] * len(tau),
            "threshold": tau,
            "tokens": np.full(len(tau), cum_tok[-1], dtype=np.int64),
            "consulted": consulted.astype(np.int64),
            "mismatches": np.full(len(tau), cum_mis[-1], dtype=np.int64),
            "caught_mismatches": caught.astype(np.int64),
        }
    )
    return frame.with_columns(
        (pl.col("consulted") / pl.col("tokens")).alias("consult_rate"),
        (pl.col("caught_mismatches") / pl.col("mismatches")).alias("caught"),
        pl.when(pl.col("consulted") > 0)
        .then(pl.col("caught_mismatches") / pl.col("consulted"))
        .alias("precision"),
    )


def replay(
    source: Source, run_id: int, router: str, thresholds: npt.ArrayLike | int = DEFAULT_THRESHOLDS
) -> pl.DataFrame:
    """Per threshold: consult rate, share of mismatches caught, precision (an int: that many quantiles)."""
    with connect(source) as con:
        found = query(con, "SELECT router FROM runs WHERE run_id = ?", [run_id])
        if found.height == 0:
            raise AnalyticsError(f"no run with run_id {run_id}; list runs with: SELECT run_id FROM runs")
        hist = feature_histogram(con, run_id, router)
    taus = quantile_thresholds(hist, thresholds) if isinstance(thresholds, int) else thresholds
    exact = found["router"][0] == "always"
    return replay_histogram(hist, router, taus).with_columns(
        pl.lit(run_id, dtype=pl.Int64).alias("run_id"), pl.lit(exact).alias("exact")
    )


def replay_all(
    source: Source,
    run_id: int,
    routers: Sequence[str] = tuple(ROUTERS),
    n_thresholds: int = DEFAULT_THRESHOLDS,
) -> pl.DataFrame:
    """Replay every router kind on one run over quantile thresholds, stacked."""
    with connect(source) as con:
        return pl.concat([replay(con, run_id, r, n_thresholds) for r in routers])


def best_threshold(replayed: pl.DataFrame, budget: float) -> RouterChoice | None:
    """The row that catches the most mismatches with consult rate ≤ budget (None if none fits)."""
    fits = replayed.filter(pl.col("consult_rate") <= budget).sort(
        ["caught", "consult_rate"], descending=[True, False]
    )
    if fits.height == 0:
        return None
    row = fits.row(0, named=True)
    return RouterChoice(
        row["router"], row["threshold"], row["consult_rate"], row["caught"], row["precision"], budget
    )


def pareto_front(replayed: pl.DataFrame) -> pl.DataFrame:
    """Rows no other row beats on both consult rate (lower) and mismatches caught (higher)."""
    ordered = replayed.sort(["consult_rate", "caught"], descending=[False, True])
    best_before = pl.col("caught").cum_max().shift(1, fill_value=-1.0)
    return ordered.filter(pl.col("caught") > best_before)
