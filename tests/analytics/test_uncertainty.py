"""Uncertainty as a mismatch predictor: AUROC, Spearman and point-biserial agree with sklearn and scipy."""

from __future__ import annotations

import duckdb
import numpy as np
import polars as pl
import pytest
from scipy import stats
from sklearn.metrics import roc_auc_score

from analytics.uncertainty import (
    entropy_histogram,
    mismatch_by_entropy_bin,
    mismatch_predictors,
    statistics_from_sums,
    uncertainty_tables,
)
from tests.analytics.conftest import add_events, add_model, add_run, random_events
from warehouse.summaries import ENTROPY_BIN_WIDTH, ENTROPY_BINS


def _stored(con: duckdb.DuckDBPyConnection, run_id: int) -> pl.DataFrame:
    """Events as stored (float32), so references see exactly the values DuckDB ranks."""
    return pl.from_arrow(
        con.sql(
            "SELECT s1_entropy, s1_prob, s1_margin, mismatch FROM token_events WHERE run_id = ?",
            params=[run_id],
        ).to_arrow_table()
    )  # type: ignore[return-value]


@pytest.fixture
def two_runs(con: duckdb.DuckDBPyConnection) -> tuple[int, int]:
    add_model(con, "L", 10)
    add_model(con, "S", 1)
    rng = np.random.default_rng(7)
    a, b = add_run(con, method="oracle"), add_run(con, method="contrastive")
    add_events(con, a, random_events(rng, samples=20, length=50, cof=0.1))
    events = random_events(rng, samples=10, length=30, cof=0.2)
    # coarse values: many ties, which AUROC must count half
    add_events(con, b, events.with_columns((pl.col("s1_entropy") * 4).round(0) / 4))
    return a, b


def test_auroc_matches_sklearn_exactly(con: duckdb.DuckDBPyConnection, two_runs: tuple[int, int]) -> None:
    got = mismatch_predictors(con, exact=True)
    for run_id in two_runs:
        ev = _stored(con, run_id)
        y = ev["mismatch"].to_numpy()
        scores = {
            "entropy": ev["s1_entropy"].to_numpy().astype(float),
            "one_minus_max_prob": 1 - ev["s1_prob"].to_numpy().astype(float),
            "one_minus_margin": 1 - ev["s1_margin"].to_numpy().astype(float),
        }
        for name, x in scores.items():
            row = got.filter((pl.col("run_id") == run_id) & (pl.col("predictor") == name)).row(0, named=True)
            assert row["auroc"] == pytest.approx(roc_auc_score(y, x), abs=1e-12)
            assert row["spearman"] == pytest.approx(stats.spearmanr(x, y).statistic, abs=1e-9)
            assert row["point_biserial"] == pytest.approx(stats.pointbiserialr(y, x).statistic, abs=1e-6)
            assert row["tokens"] == len(y) and row["mismatches"] == int(y.sum())


def test_binned_auroc_is_close_and_grouping_pools(
    con: duckdb.DuckDBPyConnection, two_runs: tuple[int, int]
) -> None:
    binned = mismatch_predictors(con, ["method"], predictors=["entropy"])
    assert binned["method"].to_list() == ["contrastive", "oracle"]
    for method, run_id in (("oracle", two_runs[0]), ("contrastive", two_runs[1])):
        ev = _stored(con, run_id)
        want = roc_auc_score(ev["mismatch"].to_numpy(), ev["s1_entropy"].to_numpy())
        got = binned.filter(pl.col("method") == method)["auroc"][0]
        assert got == pytest.approx(want, abs=1e-3)
        r_pb = stats.pointbiserialr(ev["mismatch"].to_numpy(), ev["s1_entropy"].to_numpy()).statistic
        assert binned.filter(pl.col("method") == method)["point_biserial"][0] == pytest.approx(r_pb, abs=1e-3)
        assert got > 0.6  # entropy does predict mismatch in these events


def test_statistics_from_hand_sums() -> None:
    # values 1, 2, 3 with mismatches at 2 and 3: U = 2 (each positive beats the single negative)
    sums = pl.DataFrame(
        {
            "run_id": [1],
            "predictor": ["entropy"],
            "tokens": [3],
            "mismatches": [2],
            "u": [2.0],
            "ties": [0.0],
            "sx": [6.0],
            "sxx": [14.0],
            "sxy": [5.0],
        }
    )
    row = statistics_from_sums(sums).row(0, named=True)
    assert row["auroc"] == 1.0
    assert row["spearman"] == pytest.approx(stats.spearmanr([1, 2, 3], [0, 1, 1]).statistic)
    assert row["point_biserial"] == pytest.approx(stats.pointbiserialr([0, 1, 1], [1, 2, 3]).statistic)
    undefined = statistics_from_sums(sums.with_columns(pl.lit(0).alias("mismatches"))).row(0, named=True)
    assert undefined["auroc"] is None and undefined["spearman"] is None


def test_unknown_predictor_is_refused(con: duckdb.DuckDBPyConnection) -> None:
    with pytest.raises(ValueError, match="unknown predictor"):
        mismatch_predictors(con, predictors=["loss"])


def test_mismatch_rate_by_entropy_bin(con: duckdb.DuckDBPyConnection, two_runs: tuple[int, int]) -> None:
    bins = mismatch_by_entropy_bin(con, ["method"])
    ev = pl.concat([_stored(con, r) for r in two_runs])
    assert bins["tokens"].sum() == ev.height and bins["mismatches"].sum() == ev["mismatch"].sum()
    oracle = bins.filter(pl.col("method") == "oracle").sort("bin")
    assert oracle["mismatch_rate"][0] < oracle["mismatch_rate"][4]  # rises with entropy
    assert oracle["lo"][1] == 0.5 and oracle["hi"][0] == 0.5


def test_entropy_histograms_are_densities(con: duckdb.DuckDBPyConnection, two_runs: tuple[int, int]) -> None:
    hist = entropy_histogram(con, ["method"], bins=20)
    per_class = hist.group_by("method", "mismatch").agg(
        (pl.col("density") * (pl.col("hi") - pl.col("lo"))).sum()
    )
    assert np.allclose(per_class["density"].to_numpy(), 1.0)
    assert hist["bin"].max() == 19 and hist["lo"].min() == 0.0
    mean = hist.group_by("mismatch").agg(
        ((pl.col("lo") + pl.col("hi")) / 2 * pl.col("tokens")).sum() / pl.col("tokens").sum()
    )
    by = dict(mean.iter_rows())
    assert by[True] > by[False]  # mismatched tokens sit at higher entropy
    capped = entropy_histogram(con, bins=4, upper=1.0)
    assert capped["bin"].max() == 3 and capped["hi"].max() == 1.0


def test_no_run_in_scope_gives_empty_tables(
    con: duckdb.DuckDBPyConnection, two_runs: tuple[int, int]
) -> None:
    nothing = {"method": "none such"}
    stats_ = mismatch_predictors(con, ["llm"], filters=nothing)
    bins = mismatch_by_entropy_bin(con, ["llm"], filters=nothing)
    assert stats_.height == 0 and stats_.columns == mismatch_predictors(con, ["llm"]).columns
    assert bins.height == 0 and bins.columns == mismatch_by_entropy_bin(con, ["llm"]).columns


def test_groups_with_a_null_key_pool_their_runs(con: duckdb.DuckDBPyConnection) -> None:
    """Grouped by a column some runs leave null: each group's statistics are those of its runs' events
    pooled (sklearn on the exact values), the predictor rows list the null group first and the entropy bins
    last (as the sorts they came from did), and the route's one statement gives both tables unchanged."""
    add_model(con, "L", 10)
    add_model(con, "S", 1)
    rng = np.random.default_rng(11)
    runs: dict[str | None, list[int]] = {None: [], "T0": [], "T1": []}
    for key in (None, "T1", "T0", "T1", None):
        run_id = add_run(con, slm_tuned=key)
        add_events(con, run_id, random_events(rng, samples=6, length=25, cof=0.15))
        runs[key].append(run_id)
    exact = mismatch_predictors(con, ["slm_tuned"], exact=True)
    assert exact["slm_tuned"].to_list() == [None, "T0", "T1"] * 3
    bins = mismatch_by_entropy_bin(con, ["slm_tuned"])
    assert bins["slm_tuned"].unique(maintain_order=True).to_list() == ["T0", "T1", None]
    for key, ids in runs.items():
        ev = pl.concat([_stored(con, r) for r in ids])
        y, x = ev["mismatch"].to_numpy(), ev["s1_entropy"].to_numpy().astype(float)
        mine = exact.filter(pl.col("slm_tuned").eq_missing(key) & (pl.col("predictor") == "entropy"))
        assert mine["auroc"][0] == pytest.approx(roc_auc_score(y, x), abs=1e-12)
        assert mine["tokens"][0] == len(y) and mine["mismatches"][0] == int(y.sum())
        in_bin = np.minimum(np.floor(x / ENTROPY_BIN_WIDTH), ENTROPY_BINS - 1).astype(int)
        want = {b: (int((in_bin == b).sum()), int(y[in_bin == b].sum())) for b in np.unique(in_bin)}
        got = bins.filter(pl.col("slm_tuned").eq_missing(key))
        assert {b: (t, m) for b, t, m in got.select("bin", "tokens", "mismatches").iter_rows()} == want
    stats_, bins_ = uncertainty_tables(con, ["slm_tuned"])
    assert stats_.equals(mismatch_predictors(con, ["slm_tuned"])) and bins_.equals(bins)
