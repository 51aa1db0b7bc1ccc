"""Router replay on a hand-built run, the budget choice, the Pareto front, and a brute-force property."""

from __future__ import annotations

import duckdb
import numpy as np
import numpy.typing as npt
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

from analytics.routers import (
    ROUTERS,
    best_per_router,
    best_routers,
    best_row,
    best_threshold,
    pareto_front,
    replay,
    replay_all,
    replay_histogram,
)
from analytics.source import AnalyticsError
from tests.analytics.conftest import add_events, add_model, add_run
from warehouse import vocabulary

# six tokens: (s1_prob, s1_margin, s1_entropy, System 2 disagrees)
TOKENS = [
    (0.95, 0.90, 0.1, False),
    (0.90, 0.85, 0.2, False),
    (0.60, 0.30, 1.0, True),
    (0.55, 0.10, 1.2, False),
    (0.40, 0.05, 1.5, True),
    (0.30, 0.02, 2.0, True),
]


@pytest.fixture
def run_id(con: duckdb.DuckDBPyConnection) -> int:
    add_model(con, "L", 10)
    add_model(con, "S", 1)
    run = add_run(con, router="always")
    frame = pl.DataFrame(
        {
            "sample_id": [0] * 6,
            "step": list(range(6)),
            "s1_prob": [t[0] for t in TOKENS],
            "s1_margin": [t[1] for t in TOKENS],
            "s1_entropy": [t[2] for t in TOKENS],
            "s1_token_id": [7] * 6,
            "s2_token_id": [8 if t[3] else 7 for t in TOKENS],
        },
        schema_overrides={
            "sample_id": pl.Int32,
            "step": pl.Int32,
            "s1_prob": pl.Float32,
            "s1_margin": pl.Float32,
            "s1_entropy": pl.Float32,
        },
    )
    add_events(con, run, frame.with_columns((pl.col("s2_token_id") != 7).alias("mismatch")))
    return run


def test_max_prob_replay_by_hand(con: duckdb.DuckDBPyConnection, run_id: int) -> None:
    got = replay(con, run_id, "max_prob", [0.5, 0.58, 1.0])
    # consult when s1_prob < tau: 0.5 -> 2 tokens, both mismatches; 0.58 -> 3 tokens, 2 caught; 1.0 -> all
    expected = pl.DataFrame(
        {
            "router": ["max_prob"] * 3,
            "threshold": [0.5, 0.58, 1.0],
            "tokens": [6, 6, 6],
            "consulted": [2, 3, 6],
            "mismatches": [3, 3, 3],
            "caught_mismatches": [2, 2, 3],
            "consult_rate": [2 / 6, 3 / 6, 1.0],
            "caught": [2 / 3, 2 / 3, 1.0],
            "precision": [1.0, 2 / 3, 0.5],
            "run_id": [run_id] * 3,
            "exact": [True] * 3,
        }
    )
    assert_frame_equal(got, expected, check_dtypes=False)


def test_entropy_and_margin_replay(con: duckdb.DuckDBPyConnection, run_id: int) -> None:
    ent = replay(con, run_id, "entropy", [1.1, 0.0])  # consult when entropy > tau
    assert ent.sort("threshold")["consulted"].to_list() == [6, 3]
    assert ent.sort("threshold")["caught_mismatches"].to_list() == [3, 2]
    mar = replay(con, run_id, "margin", [0.2])  # consult when margin < 0.2
    assert mar["consulted"].to_list() == [3] and mar["caught_mismatches"].to_list() == [2]


def test_quantile_grid_spans_nothing_to_everything(con: duckdb.DuckDBPyConnection, run_id: int) -> None:
    all_kinds = replay_all(con, run_id, n_thresholds=4)
    assert set(all_kinds["router"]) == set(vocabulary.THRESHOLD_RULES)
    for kind in vocabulary.THRESHOLD_RULES:
        rates = all_kinds.filter(pl.col("router") == kind)["consult_rate"]
        assert rates.min() == 0.0 and rates.max() == 1.0


def test_best_threshold_and_pareto(con: duckdb.DuckDBPyConnection, run_id: int) -> None:
    frames = replay_all(con, run_id, n_thresholds=6)
    choice = best_threshold(frames, budget=0.5)
    assert choice is not None and choice.consult_rate <= 0.5 and choice.caught == pytest.approx(2 / 3)
    assert best_threshold(frames, budget=-1) is None
    for budget in (0.0, 0.3, 0.5, 1.0):  # each router's best, from one sort: its own rows' best
        per = best_per_router(frames, budget)
        for kind in frames["router"].unique():
            alone = best_threshold(frames.filter(pl.col("router") == kind), budget)
            assert per.get(kind) == alone
    front = pareto_front(frames)
    rates, caught = front["consult_rate"].to_numpy(), front["caught"].to_numpy()
    assert np.all(np.diff(rates) > 0) and np.all(np.diff(caught) > 0)
    for row in frames.iter_rows(named=True):  # nothing on the front is beaten by any row
        assert not np.any(
            (row["consult_rate"] < rates) & (row["caught"] >= caught)
            | ((row["consult_rate"] <= rates) & (row["caught"] > caught))
        )


def test_best_row_is_the_first_row_of_the_budget_sort() -> None:
    # The choice rule against polars' filter and stable sort (NaN above every number), on tables with ties,
    # NaN shares caught (no mismatches) and NaN consult rates (no tokens).
    rng = np.random.default_rng(4)
    for _ in range(300):
        n = int(rng.integers(0, 12))
        rate = rng.choice([0.0, 0.1, 0.25, 0.5, 1.0, np.nan], n)
        caught = rng.choice([0.0, 1 / 3, 0.5, 1.0, np.nan], n, p=[0.2, 0.3, 0.2, 0.2, 0.1])
        budget = float(rng.choice([0.0, 0.1, 0.3, 1.0]))
        frame = pl.DataFrame({"row": np.arange(n), "consult_rate": rate, "caught": caught})
        want = frame.filter(pl.col("consult_rate") <= budget).sort(
            ["caught", "consult_rate"], descending=[True, False], maintain_order=True
        )
        got = best_row(rate, caught, budget)
        assert got == (want["row"][0] if want.height else None), (rate, caught, budget)


def test_best_routers_equal_the_choices_on_the_replayed_frame(
    con: duckdb.DuckDBPyConnection, run_id: int
) -> None:
    for kinds in (tuple(ROUTERS), ("margin", "entropy")):
        for n in (1, 3, 6, 50):
            frame = replay_all(con, run_id, kinds, n)
            for budget in (0.0, 0.2, 0.5, 1.0):
                best, per = best_routers(con, run_id, kinds, n, budget)
                assert best == best_threshold(frame, budget) and per == best_per_router(frame, budget)
                assert list(per) == [k for k in kinds if k in per]


def test_bad_requests(con: duckdb.DuckDBPyConnection, run_id: int) -> None:
    with pytest.raises(AnalyticsError, match="unknown router 'learned'"):
        replay(con, run_id, "learned", [0.5])
    with pytest.raises(AnalyticsError, match="no run with run_id 999"):
        replay(con, 999, "max_prob", [0.5])


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 20), st.booleans()), min_size=1, max_size=60),
    st.lists(st.integers(-1, 21), min_size=1, max_size=8),
    st.sampled_from(["max_prob", "entropy"]),
)
def test_replay_matches_brute_force(tokens: list[tuple[int, bool]], taus: list[int], router: str) -> None:
    values = np.array([t[0] for t in tokens], dtype=float) / 20
    dis = np.array([t[1] for t in tokens])
    hist = (
        pl.DataFrame({"value": values, "mis": dis})
        .group_by("value")
        .agg(pl.len().cast(pl.Int64).alias("tokens"), pl.col("mis").sum().cast(pl.Int64).alias("mismatches"))
        .sort("value")
    )
    thresholds = np.array(taus, dtype=float) / 20
    got = replay_histogram(hist, router, thresholds)
    for row in got.iter_rows(named=True):
        mask = values < row["threshold"] if router == "max_prob" else values > row["threshold"]
        assert row["consulted"] == mask.sum() and row["caught_mismatches"] == (mask & dis).sum()


@pytest.fixture
def edge_run(con: duckdb.DuckDBPyConnection) -> tuple[int, pl.DataFrame]:
    """A run of 400 tokens, a third of each feature exactly on its grid's edges (k/4096, k/512)."""
    add_model(con, "L", 10)
    add_model(con, "S", 1)
    run = add_run(con, router="always")
    rng = np.random.default_rng(5)
    n = 400
    on_edge = rng.random(n) < 0.33

    def feature(scale: float, cells: int) -> npt.NDArray[np.float32]:
        raw = rng.random(n) * scale
        return np.where(on_edge, np.round(raw * cells) / cells, raw).astype(np.float32)

    s1 = rng.integers(0, 50, n).astype(np.int32)
    frame = pl.DataFrame(
        {
            "sample_id": np.repeat(np.arange(8, dtype=np.int32), n // 8),
            "step": np.tile(np.arange(n // 8, dtype=np.int32), 8),
            "s1_prob": feature(1.0, 4096),
            "s1_margin": feature(1.0, 4096),
            "s1_entropy": feature(6.0, 512),
            "s1_token_id": s1,
            "s2_token_id": np.where(rng.random(n) < 0.3, s1 + 1, s1),
        }
    )
    add_events(
        con, run, frame.with_columns((pl.col("s2_token_id") != pl.col("s1_token_id")).alias("mismatch"))
    )
    return run, frame


def brute_force(frame: pl.DataFrame, router: str, tau: float) -> tuple[int, int]:
    """Consulted tokens and caught replay mismatches at τ, straight from the feature values."""
    rule = ROUTERS[router]
    column, direction = rule.feature, rule.direction
    values = frame[column].cast(pl.Float64).to_numpy()
    mask = values < tau if direction == "below" else values > tau
    mis = (frame["s2_token_id"] != frame["s1_token_id"]).to_numpy()
    return int(mask.sum()), int((mask & mis).sum())


def test_replay_from_summary_rows_is_exact_at_every_reported_threshold(
    con: duckdb.DuckDBPyConnection, edge_run: tuple[int, pl.DataFrame]
) -> None:
    run_id, frame = edge_run
    replayed = replay_all(con, run_id, n_thresholds=20)
    for kind in ROUTERS:
        rows = replayed.filter(pl.col("router") == kind)
        assert rows.height > 15 and rows["consult_rate"].min() == 0.0 and rows["consult_rate"].max() == 1.0
        for row in rows.iter_rows(named=True):
            assert (row["consulted"], row["caught_mismatches"]) == brute_force(frame, kind, row["threshold"])
    grid_taus, off_taus = [0.25, 1 / 4096, 3 / 512], [0.3, 1e-4]  # read from router_sums / from the events
    for kind in ROUTERS:
        for taus in (grid_taus, off_taus):
            got = replay(con, run_id, kind, taus)
            assert [(r["consulted"], r["caught_mismatches"]) for r in got.iter_rows(named=True)] == [
                brute_force(frame, kind, t) for t in sorted(taus)
            ]
