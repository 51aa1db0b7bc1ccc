"""Offline router replay: what a threshold router would have consulted and caught on a recorded run.

The collector records System 2's choice (`s2_token_id`) for every token, consulted or not, so a token is a
"mismatch under replay" when s2_token_id ≠ s1_token_id. On an `always` run that is exactly what the run
would have done under the replayed router; on a routed run System 2's choice was recorded all the same,
but its context followed the original router's tokens, so replay is an approximation there.

Replay reads the summary rows ingest writes (`router_sums`: tokens and replay mismatches per cell of each
router's grid, warehouse/summaries.py), so its cost does not grow with the run's tokens. The grid is exact
at its edges, and every threshold replay reports from those rows is an edge: the quantile thresholds are
cell edges, and explicit thresholds on the grid (multiples of 1/cells) are read from the rows too. Explicit
thresholds off the grid are counted from the run's exact feature values in token_events (a scan).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import numpy.typing as npt
import polars as pl

from analytics.source import AnalyticsError, Source, connect, query, query_arrays
from warehouse import vocabulary

# the replayable routers: every threshold rule (feature column, consult where it is < τ or > τ, grid cells)
ROUTERS = vocabulary.THRESHOLD_RULES
if TYPE_CHECKING:
    RouterKind = str
else:
    RouterKind = Literal[tuple(ROUTERS)]
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


def check_router(router: str) -> tuple[str, vocabulary.Direction]:
    """Feature column and direction of a router kind."""
    rule = vocabulary.threshold_rule(router)
    if rule is None:
        raise AnalyticsError(f"unknown router {router!r}; replay supports: {', '.join(ROUTERS)}")
    return rule.feature, rule.direction


def feature_histogram(source: Source, run_id: int, router: str) -> pl.DataFrame:
    """Distinct feature values of one run with token and replay-mismatch counts, sorted (scans the events)."""
    column, _ = check_router(router)
    return query(
        source,
        f"""SELECT CAST({column} AS DOUBLE) AS value, CAST(count(*) AS BIGINT) AS tokens,
                   CAST(sum(CAST(s2_token_id <> s1_token_id AS INTEGER)) AS BIGINT) AS mismatches
            FROM token_events WHERE run_id = ? GROUP BY ALL ORDER BY value""",
        [run_id],
    )


# One router's grid of one run as arrays: each cell's edge value (sorted), tokens and replay mismatches.
Grid = tuple[npt.NDArray[np.float64], npt.NDArray[np.int64], npt.NDArray[np.int64]]


def grid_arrays(source: Source, run_id: int, routers: Sequence[str]) -> dict[str, Grid]:
    """Per router, its grid cells of one run from `router_sums`, each as its edge value, sorted by it.

    A cell's `value` is c/cells: the lower edge of a floor cell (values ≥ it), the upper edge of a ceil
    cell (values ≤ it), so `replay_histogram` at any edge counts exactly the tokens the events would give.
    Only the routers asked for are read (all: no filter, which DuckDB scans faster than an IN list). The
    router comes back as its position among `routers` and the cells are sorted here: DuckDB's ORDER BY
    and a text column cost ~3 ms of the ~11,000 rows of a 10M-event run, NumPy's split and sorts a tenth.
    """
    for r in routers:
        check_router(r)
    asked = set(routers) != set(ROUTERS)
    marks = ", ".join("?" for _ in routers)
    rows = query_arrays(
        source,
        f"""SELECT list_position(?, router) AS code, cell, tokens, replay_mismatches AS mismatches
           FROM router_sums WHERE run_id = ? {f"AND router IN ({marks})" if asked else ""}""",
        [list(routers), run_id, *(routers if asked else ())],
    )
    code = np.ma.filled(rows["code"], 0)  # 0: a router of the table not asked for
    out = {}
    for i, r in enumerate(routers, start=1):
        part = code == i
        order = np.argsort(rows["cell"][part])  # (run, router, cell) is the table's key: no ties
        value = rows["cell"][part][order] / vocabulary.THRESHOLD_RULES[r].cells
        tokens, mismatches = (
            np.asarray(rows[c][part][order], dtype=np.int64) for c in ("tokens", "mismatches")
        )
        out[r] = (value, tokens, mismatches)
    return out


def grid_histograms(source: Source, run_id: int, routers: Sequence[str]) -> dict[str, pl.DataFrame]:
    """`grid_arrays` as frames (value, tokens, mismatches)."""
    schema = {"value": pl.Float64, "tokens": pl.Int64, "mismatches": pl.Int64}
    return {
        r: pl.DataFrame(dict(zip(schema, grid, strict=True)), schema=schema)
        for r, grid in grid_arrays(source, run_id, routers).items()
    }


def on_grid(router: str, thresholds: npt.NDArray[np.float64]) -> bool:
    """Whether every threshold is an edge of the router's grid (so the summary rows replay it exactly)."""
    scaled = thresholds * vocabulary.THRESHOLD_RULES[router].cells
    return bool(np.all(np.floor(scaled) == scaled))


def quantile_thresholds(
    hist: pl.DataFrame, n: int = DEFAULT_THRESHOLDS, step: float | None = None
) -> npt.NDArray[np.float64]:
    """n thresholds at evenly spaced token quantiles of the feature (so consult rates spread evenly).

    The thresholds are values of the histogram, and the ends one `step` beyond them (a grid's cell width;
    None: the next float), so on a grid histogram every threshold is an edge.
    """
    return _thresholds(hist["value"].to_numpy(), hist["tokens"].to_numpy(), n, step)


def _thresholds(
    values: npt.NDArray[np.float64], tokens: npt.NDArray[np.int64], n: int, step: float | None
) -> npt.NDArray[np.float64]:
    """`quantile_thresholds` of a histogram's columns."""
    if values.size == 0:
        return np.empty(0)
    cum = np.cumsum(tokens)
    targets = np.linspace(0, cum[-1], n + 2)[1:-1]
    picks = values[np.minimum(np.searchsorted(cum, targets), len(values) - 1)]
    lo, hi = values[0], values[-1]
    below = np.nextafter(lo, -np.inf) if step is None else lo - step
    above = np.nextafter(hi, np.inf) if step is None else hi + step
    # both ends, so every router reaches "consult nothing" and "consult everything"
    return np.unique(np.concatenate([[below, lo, above], picks]))


def replay_histogram(hist: pl.DataFrame, router: str, thresholds: npt.ArrayLike) -> pl.DataFrame:
    """Replay one router over a feature histogram: consult rate, share of mismatches caught, precision."""
    grid = (hist["value"].to_numpy(), hist["tokens"].to_numpy(), hist["mismatches"].to_numpy())
    cols = _replay(grid, router, thresholds)
    return pl.DataFrame(
        {
            "router": [router] * len(cols["threshold"]),
            **cols,
            "precision": pl.Series(cols["precision"], nan_to_null=True),  # null where nothing is consulted
        }
    )


def _replay(grid: Grid, router: str, thresholds: npt.ArrayLike) -> dict[str, npt.NDArray[Any]]:
    """`replay_histogram`'s columns (precision NaN where nothing is consulted) from a histogram's columns."""
    _, direction = check_router(router)
    values, tok, mis = grid
    tau = np.sort(np.asarray(thresholds, dtype=float).ravel())
    cum_tok = np.concatenate([[0], np.cumsum(tok)])
    cum_mis = np.concatenate([[0], np.cumsum(mis)])
    if direction == "below":  # consult when value < τ
        idx = np.searchsorted(values, tau, side="left")
        consulted, caught = cum_tok[idx], cum_mis[idx]
    else:  # consult when value > τ
        idx = np.searchsorted(values, tau, side="right")
        consulted, caught = cum_tok[-1] - cum_tok[idx], cum_mis[-1] - cum_mis[idx]
    tokens = np.full(len(tau), cum_tok[-1], dtype=np.int64)
    mismatches = np.full(len(tau), cum_mis[-1], dtype=np.int64)
    consulted, caught = consulted.astype(np.int64), caught.astype(np.int64)
    with np.errstate(divide="ignore", invalid="ignore"):  # 0 / 0 is NaN, as polars divides
        return {
            "threshold": tau,
            "tokens": tokens,
            "consulted": consulted,
            "mismatches": mismatches,
            "caught_mismatches": caught,
            "consult_rate": consulted / tokens,
            "caught": caught / mismatches,
            "precision": np.where(consulted > 0, caught / consulted, np.nan),  # NaN only where none is
        }


def _run_exact(source: Source, run_id: int) -> bool:
    """Whether replay is exact on the run (an `always` run); raises for a run that does not exist."""
    found = query(source, "SELECT router FROM runs WHERE run_id = ?", [run_id])
    if found.height == 0:
        raise AnalyticsError(f"no run with run_id {run_id}; list runs with: SELECT run_id FROM runs")
    return bool(found["router"][0] == "always")


def _replayed(
    hist: pl.DataFrame, router: str, taus: npt.ArrayLike | int, run_id: int, exact: bool
) -> pl.DataFrame:
    if isinstance(taus, int):
        taus = quantile_thresholds(hist, taus, 1 / vocabulary.THRESHOLD_RULES[router].cells)
    return replay_histogram(hist, router, taus).with_columns(
        pl.lit(run_id, dtype=pl.Int64).alias("run_id"), pl.lit(exact).alias("exact")
    )


def replay(
    source: Source, run_id: int, router: str, thresholds: npt.ArrayLike | int = DEFAULT_THRESHOLDS
) -> pl.DataFrame:
    """Per threshold: consult rate, share of mismatches caught, precision (an int: that many quantiles)."""
    check_router(router)
    taus = thresholds if isinstance(thresholds, int) else np.asarray(thresholds, dtype=float).ravel()
    with connect(source) as con:
        exact = _run_exact(con, run_id)
        if isinstance(taus, int) or on_grid(router, taus):
            hist = grid_histograms(con, run_id, (router,))[router]
        else:
            hist = feature_histogram(con, run_id, router)
    return _replayed(hist, router, taus, run_id, exact)


def replay_all(
    source: Source,
    run_id: int,
    routers: Sequence[str] | None = None,
    n_thresholds: int = DEFAULT_THRESHOLDS,
) -> pl.DataFrame:
    """Replay every router kind (or `routers`) on one run over quantile thresholds (grid edges), stacked."""
    kinds = tuple(routers) if routers is not None else tuple(ROUTERS)
    with connect(source) as con:
        exact = _run_exact(con, run_id)
        hists = grid_histograms(con, run_id, kinds)
    return pl.concat([_replayed(hists[r], r, n_thresholds, run_id, exact) for r in kinds])


def best_row(
    consult_rate: npt.NDArray[np.float64], caught: npt.NDArray[np.float64], budget: float
) -> int | None:
    """The row with consult rate ≤ budget that catches the most mismatches, then consults least, then comes
    first (None if none fits). A NaN share caught (a run without mismatches) ranks above every number, as
    polars sorts it; a NaN consult rate (no tokens) fits no budget."""
    fits = np.flatnonzero(consult_rate <= budget)
    if not fits.size:
        return None
    share = caught[fits]
    nan = np.isnan(share)
    top = fits[nan] if nan.any() else fits[share == share.max()]
    return int(top[np.argmin(consult_rate[top])])  # the first of the lowest


def _choice(row: dict[str, Any], budget: float) -> RouterChoice:
    return RouterChoice(
        row["router"], row["threshold"], row["consult_rate"], row["caught"], row["precision"], budget
    )


def best_threshold(replayed: pl.DataFrame, budget: float) -> RouterChoice | None:
    """The row that catches the most mismatches with consult rate ≤ budget (None if none fits)."""
    i = best_row(replayed["consult_rate"].to_numpy(), replayed["caught"].to_numpy(), budget)
    return None if i is None else _choice(replayed.row(i, named=True), budget)


def best_per_router(replayed: pl.DataFrame, budget: float) -> dict[str, RouterChoice]:
    """`best_threshold` of each router that has a row within the budget."""
    out = {}
    for kind in replayed["router"].unique(maintain_order=True):
        choice = best_threshold(replayed.filter(pl.col("router") == kind), budget)
        if choice is not None:
            out[kind] = choice
    return out


def best_routers(
    source: Source, run_id: int, routers: Sequence[str], n_thresholds: int, budget: float
) -> tuple[RouterChoice | None, dict[str, RouterChoice]]:
    """`best_threshold` and `best_per_router` of `replay_all(source, run_id, routers, n_thresholds)`,
    computed on its columns as arrays: no frame per router, no stacking, filtering or sorting of frames
    (those cost more than the replay itself). The run is not checked (the caller has)."""
    grids = grid_arrays(source, run_id, routers)
    cols = [
        _replay(grids[r], r, _thresholds(*grids[r][:2], n_thresholds, 1 / ROUTERS[r].cells)) for r in routers
    ]
    starts = np.cumsum([0, *(len(c["threshold"]) for c in cols)])  # each router's first row in the stack

    def choice(row: int) -> RouterChoice:  # a row of the stacked columns
        at = int(np.searchsorted(starts, row, side="right")) - 1
        c, i = cols[at], row - int(starts[at])
        precision = None if np.isnan(c["precision"][i]) else float(c["precision"][i])
        threshold, rate, caught = (float(c[k][i]) for k in ("threshold", "consult_rate", "caught"))
        return RouterChoice(routers[at], threshold, rate, caught, precision, budget)

    per = {}
    for at, r in enumerate(routers):
        own = best_row(cols[at]["consult_rate"], cols[at]["caught"], budget)
        if own is not None:
            per[r] = choice(int(starts[at]) + own)
    rates, caught = (np.concatenate([c[k] for c in cols]) for k in ("consult_rate", "caught"))
    best = best_row(rates, caught, budget)
    return (None if best is None else choice(best)), per


def pareto_front(replayed: pl.DataFrame) -> pl.DataFrame:
    """Rows no other row beats on both consult rate (lower) and mismatches caught (higher)."""
    ordered = replayed.sort(["consult_rate", "caught"], descending=[False, True])
    best_before = pl.col("caught").cum_max().shift(1, fill_value=-1.0)
    return ordered.filter(pl.col("caught") > best_before)
