"""Collaboration frequency: pooled CoF, per-sample mean and its t interval, grouping and its guard."""

from __future__ import annotations

from pathlib import Path

import duckdb
import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal
from scipy import special, stats

from analytics.frequency import collaboration_frequency, with_intervals
from analytics.source import RUN_COLUMNS, AnalyticsError, run_column_dtype
from tests.analytics.conftest import add_events, add_model, add_run


def _events(mismatch_by_sample: list[list[bool]], consulted: bool = True) -> pl.DataFrame:
    rows = [(s, i, m) for s, ms in enumerate(mismatch_by_sample) for i, m in enumerate(ms)]
    return pl.DataFrame(
        {"sample_id": [r[0] for r in rows], "step": [r[1] for r in rows], "mismatch": [r[2] for r in rows]},
        schema={"sample_id": pl.Int32, "step": pl.Int32, "mismatch": pl.Boolean},
    ).with_columns(pl.lit(consulted).alias("consulted"))


def test_per_run_cof_with_t_interval(con: duckdb.DuckDBPyConnection, empty_warehouse: Path) -> None:
    add_model(con, "L", 10)
    add_model(con, "S", 1)
    run = add_run(con)
    # samples: 1/4, 2/2, 0/4 mismatches -> pooled 3/10, per-sample mean (0.25 + 1 + 0) / 3
    add_events(con, run, _events([[True, False, False, False], [True, True], [False] * 4]))
    got = collaboration_frequency(con)
    per_sample = np.array([0.25, 1.0, 0.0])
    mean, sd = per_sample.mean(), per_sample.std(ddof=1)
    lo, hi = stats.t.interval(0.95, 2, loc=mean, scale=sd / np.sqrt(3))
    # the pooled rate's own interval: residuals m_i − 0.3·n_i over samples, delta method, t(2)
    resid = np.array([1, 2, 0]) - 0.3 * np.array([4, 2, 4])
    pooled_se = np.sqrt((resid**2).sum() / (3 * 2)) / (10 / 3)
    logit_half = stats.t.ppf(0.975, 2) * pooled_se / (0.3 * 0.7)
    pooled_lo, pooled_hi = (float(special.expit(special.logit(0.3) + s * logit_half)) for s in (-1, 1))
    expected = pl.DataFrame(
        {
            "run_id": [run],
            "samples": [3],
            "tokens": [10],
            "mismatches": [3],
            "consulted": [10],
            "cof": [0.3],
            "cof_lo": [pooled_lo],
            "cof_hi": [pooled_hi],
            "design_effect": [pooled_se**2 / (0.3 * 0.7 / 10)],
            "cof_mean": [mean],
            "cof_sd": [sd],
            "cof_mean_lo": [max(lo, 0.0)],
            "cof_mean_hi": [min(hi, 1.0)],
            "consult_rate": [1.0],
        }
    )
    assert_frame_equal(got, expected, check_dtypes=False)
    # a path opens the file read-only and gives the same answer (the writer must let go first)
    con.close()
    assert_frame_equal(collaboration_frequency(empty_warehouse), got)


def test_grouping_pools_runs_and_filters(con: duckdb.DuckDBPyConnection) -> None:
    add_model(con, "L", 10)
    add_model(con, "S", 1)
    a = add_run(con, method="oracle")
    b = add_run(con, method="oracle", dataset="mmlu")
    c = add_run(con, method="contrastive")
    add_events(con, a, _events([[True, False], [False, False]]))
    add_events(con, b, _events([[True, True]]))
    add_events(con, c, _events([[False, False, False, True]], consulted=False))
    got = collaboration_frequency(con, ["method"]).select("method", "samples", "tokens", "mismatches", "cof")
    expected = pl.DataFrame(
        {"method": ["contrastive", "oracle"], "samples": [1, 3], "tokens": [4, 6], "mismatches": [1, 3]}
    ).with_columns((pl.col("mismatches") / pl.col("tokens")).alias("cof"))
    assert_frame_equal(got, expected, check_dtypes=False)
    only = collaboration_frequency(con, ["method", "dataset"], filters={"dataset": ["mmlu"]})
    assert only["cof"].to_list() == [1.0] and only["cof_lo"].to_list() == [None]  # one sample: no interval
    assert collaboration_frequency(con, filters={"method": "nope"}).height == 0


def test_unknown_group_column_is_refused(con: duckdb.DuckDBPyConnection) -> None:
    with pytest.raises(AnalyticsError, match="unknown group_by column.*choose from: run_id"):
        collaboration_frequency(con, ["llm", "prompt; DROP TABLE runs"])
    with pytest.raises(AnalyticsError, match="unknown filter column"):
        collaboration_frequency(con, filters={"nope": 1})
    with pytest.raises(AnalyticsError, match="empty"):
        collaboration_frequency(con, [])


def test_identical_models_have_zero_cof(con: duckdb.DuckDBPyConnection) -> None:
    add_model(con, "S", 1)
    run = add_run(con, llm="S", slm="S")
    add_events(con, run, _events([[False] * 5, [False] * 3]))
    assert collaboration_frequency(con).height == 0  # a model alone is a baseline, not a pair: asked for
    got = collaboration_frequency(con, filters={"baseline": True})
    assert (
        got["cof"].to_list() == [0.0]
        and got["cof_hi"].to_list() == [0.0]
        and got["cof_mean_hi"].to_list() == [0.0]
    )


def test_samples_alike_have_no_spread(con: duckdb.DuckDBPyConnection) -> None:
    """Seven samples with CoF 2/7 each: Σ r² − (Σ r)²/k rounds to 2e-16, not 0; the spread is 0, as the
    samples' own standard deviation, and the mean's interval the point."""
    add_model(con, "L", 10)
    add_model(con, "S", 1)
    run = add_run(con)
    add_events(con, run, _events([[True, True] + [False] * 5] * 7))
    row = collaboration_frequency(con).row(0, named=True)
    assert row["cof_sd"] == 0.0 and row["cof_mean_lo"] == row["cof_mean"] == row["cof_mean_hi"]
    assert row["cof_mean"] == pytest.approx(2 / 7, rel=1e-15)


@settings(max_examples=50, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(1, 50), st.integers(0, 50)).map(lambda t: (t[0], min(t[0], t[1]))),
        min_size=1,
        max_size=30,
    )
)
def test_interval_brackets_the_mean(samples: list[tuple[int, int]]) -> None:
    tokens = np.array([s[0] for s in samples])
    mism = np.array([s[1] for s in samples])
    per = mism / tokens
    sums = pl.DataFrame(
        {
            "samples": [len(samples)],
            "tokens": [int(tokens.sum())],
            "mismatches": [int(mism.sum())],
            "consulted": [int(tokens.sum())],
            "cof_mean": [float(per.mean())],
            "cof_sd": [float(per.std(ddof=1)) if len(samples) > 1 else None],
            **_square_sums(mism, tokens),
        }
    )
    row = with_intervals(sums).row(0, named=True)
    assert 0.0 <= row["cof"] <= 1.0
    if len(samples) > 1:
        assert row["cof_mean_lo"] <= row["cof_mean"] + 1e-12 <= row["cof_mean_hi"] + 2e-12
        assert row["cof_lo"] <= row["cof"] + 1e-12 <= row["cof_hi"] + 2e-12


def _square_sums(m: np.ndarray, n: np.ndarray) -> dict[str, list[float]]:
    """The per-sample square sums `with_intervals` reads (Σ m², Σ m·n, Σ n²), as the SQL computes them."""
    m, n = m.astype(float), n.astype(float)
    return {"m_sq": [float(m @ m)], "mn": [float(m @ n)], "n_sq": [float(n @ n)]}


def test_intervals_cover_their_own_number_over_clustered_samples() -> None:
    """1,000 simulated groups of 30 samples whose rate varies by sample (clustered: a Beta per sample) and
    falls with the sample's length, so the pooled rate (0.158 here) and the mean per-sample rate (0.182)
    differ: each 95% interval covers its own number 93–97% of the time; the mean's interval would cover the
    pooled rate far less often, which is why the two are labelled apart."""
    rng = np.random.default_rng(7)
    sims, k, lengths = 1000, 30, np.array([8, 16, 32, 64])
    rate_of = {8: 0.30, 16: 0.22, 32: 0.13, 64: 0.08}
    pooled = float(sum(n * rate_of[n] for n in lengths) / lengths.sum())
    mean_rate = float(np.mean(list(rate_of.values())))
    n = rng.choice(lengths, size=(sims, k))
    mu = np.vectorize(rate_of.get)(n)
    p = rng.beta(mu * 4, (1 - mu) * 4)  # concentration 4: strongly clustered
    m = rng.binomial(n, p)
    per = m / n
    sums = pl.DataFrame(
        {
            "samples": np.full(sims, k),
            "tokens": n.sum(1),
            "mismatches": m.sum(1),
            "consulted": n.sum(1),
            "cof_mean": per.mean(1),
            "cof_sd": per.std(1, ddof=1),
            "m_sq": (m.astype(float) ** 2).sum(1),
            "mn": (m * n).astype(float).sum(1),
            "n_sq": (n.astype(float) ** 2).sum(1),
        }
    )
    got = with_intervals(sums)
    covers = ((got["cof_lo"] <= pooled) & (pooled <= got["cof_hi"])).mean()
    covers_mean = ((got["cof_mean_lo"] <= mean_rate) & (mean_rate <= got["cof_mean_hi"])).mean()
    wrong_number = ((got["cof_mean_lo"] <= pooled) & (pooled <= got["cof_mean_hi"])).mean()
    assert 0.93 <= covers <= 0.97, covers
    assert 0.93 <= covers_mean <= 0.97, covers_mean
    assert wrong_number < 0.8, wrong_number
    assert (got["design_effect"] > 2).all()  # clustered samples: worth far fewer than their tokens


def test_groupable_run_columns_and_their_types_come_from_the_runs_model() -> None:
    """What may be grouped or filtered by, and the polars type of each, as the `runs` model declares them."""
    assert RUN_COLUMNS == (
        "run_id", "run_key", "llm", "slm", "slm_tuned", "method", "router", "threshold", "dataset", "status",
        "n_samples", "seed", "temperature", "top_p", "device", "dtype", "experiment", "identity", "setup",
    )  # fmt: skip
    names = ("run_id", "n_samples", "seed", "threshold", "top_p", "llm", "slm_tuned", "not_a_column")
    types = (pl.Int64, pl.Int32, pl.Int64, pl.Float64, pl.Float64, pl.Utf8, pl.Utf8, pl.Utf8)
    assert [run_column_dtype(c) for c in names] == list(types)
