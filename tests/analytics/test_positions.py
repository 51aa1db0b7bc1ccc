"""Where mismatches fall: decile shares and the early share against the uniform baseline."""

from __future__ import annotations

import duckdb
import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal
from scipy import stats

from analytics.positions import (
    FIXED_STEPS,
    Alternative,
    early_share,
    early_share_row,
    fixed_steps,
    position_profile,
)
from tests.analytics.conftest import add_events, add_model, add_run, random_events


def _run(con: duckdb.DuckDBPyConnection, mismatch_steps: list[set[int]], length: int = 10) -> int:
    add_model(con, "L", 10)
    add_model(con, "S", 1)
    run = add_run(con)
    rows = [(s, i, i in ms) for s, ms in enumerate(mismatch_steps) for i in range(length)]
    add_events(
        con,
        run,
        pl.DataFrame(
            rows, schema={"sample_id": pl.Int32, "step": pl.Int32, "mismatch": pl.Boolean}, orient="row"
        ),
    )
    return run


def test_decile_profile_by_hand(con: duckdb.DuckDBPyConnection) -> None:
    # two samples of 10 tokens: one token per decile; mismatches at steps 0, 0, 1 and 9
    run = _run(con, [{0, 1}, {0, 9}])
    got = position_profile(con)
    tokens = [2] * 10
    mismatches = [2, 1] + [0] * 7 + [1]
    expected = pl.DataFrame(
        {"run_id": [run] * 10, "bin": list(range(10)), "tokens": tokens, "mismatches": mismatches}
    ).with_columns(
        (pl.col("mismatches") / pl.col("tokens")).alias("mismatch_rate"),
        (pl.col("mismatches") / 4).alias("mismatch_share"),
        pl.lit(0.1).alias("token_share"),
    )
    assert_frame_equal(got, expected, check_dtypes=False)


def test_early_share_against_uniform(con: duckdb.DuckDBPyConnection) -> None:
    run = _run(con, [{0, 1}, {0, 9}])
    add_run(con)  # a run without events has no row
    assert early_share(con, k=2).height == 1 and position_profile(con)["run_id"].unique().to_list() == [run]
    got = early_share(con, k=2).row(0, named=True)
    # first 2 tokens hold 4 of 20 tokens (baseline 0.2) and 3 of 4 mismatches
    assert (got["run_id"], got["early_tokens"], got["early_mismatches"]) == (run, 4, 3)
    assert got["mismatch_share"] == 0.75 and got["baseline_share"] == 0.2
    assert got["enrichment"] == pytest.approx(3.75)
    # clustered by sample: d = early mismatches − mismatches × 0.2 per sample = 1.6 and 0.6; t(1), two-sided
    t = 2.2 / np.sqrt(1.6**2 + 0.6**2)
    assert got["p_value"] == pytest.approx(2 * stats.t(1).sf(t)) and got["alternative"] == "two-sided"
    greater = early_share(con, k=2, alternative="greater").row(0, named=True)
    assert greater["p_value"] == pytest.approx(stats.t(1).sf(t))
    assert got["window"] == "first 2 tokens" and "clustered by sample" in got["test"]
    assert got["fixed_steps"] == [] and got["enrichment_without_fixed"] is None
    frac = early_share(con, fraction=0.1).row(0, named=True)
    assert (frac["early_tokens"], frac["early_mismatches"], frac["window"]) == (2, 2, "first 10% of tokens")
    with pytest.raises(ValueError, match="either k"):
        early_share(con, k=2, fraction=0.1)


def _sample_rows(mismatch: np.ndarray, window: int) -> pl.DataFrame:
    """`sample_windows` rows of samples given as a [k, L] mismatch matrix, early window = first `window`."""
    k, length = mismatch.shape
    cols: dict[str, object] = {
        "tokens": np.full(k, length),
        "mismatches": mismatch.sum(1),
        "early_tokens": np.full(k, window),
        "early_mismatches": mismatch[:, :window].sum(1),
    }
    for s in range(FIXED_STEPS):
        cols |= {f"at_{s}": np.ones(k, int), f"miss_at_{s}": mismatch[:, s].astype(int),
                 f"early_at_{s}": np.full(k, int(s < window))}  # fmt: skip
    return pl.DataFrame(cols)


def _row(mismatch: np.ndarray, window: int, alternative: Alternative = "two-sided") -> dict[str, object]:
    """`early_share_row` of the samples of a [k, L] mismatch matrix, with the steps `fixed_steps` finds."""
    part = _sample_rows(mismatch, window)
    at = [int(part[f"at_{s}"].sum()) for s in range(FIXED_STEPS)]
    miss_at = [int(part[f"miss_at_{s}"].sum()) for s in range(FIXED_STEPS)]
    fixed = fixed_steps(int(part["tokens"].sum()), int(part["mismatches"].sum()), at, miss_at)
    return early_share_row(part, fixed, alternative)


def test_the_clustered_test_holds_its_level_where_mismatches_come_in_bursts() -> None:
    """Uniform positions, but each sample's mismatches come as one burst of 6 (placed uniformly, wrapping):
    tokens are not independent. Over 400 groups of 60 samples the clustered test rejects at the 5% level
    close to 5% of the time (6.5% over 2,000 groups, measured); a binomial test over tokens, as the early
    share used to be tested, rejects about a quarter of the time."""
    rng = np.random.default_rng(11)
    k, length, window, rejected, naive = 60, 50, 5, 0, 0
    for _ in range(400):
        pos = (rng.integers(0, length, k)[:, None] + np.arange(6)) % length
        mismatch = np.zeros((k, length), bool)
        mismatch[np.repeat(np.arange(k), 6), pos.ravel()] = np.repeat(rng.random(k) < 0.9, 6)
        row = _row(mismatch, window)
        rejected += row["p_value"] is not None and row["p_value"] < 0.05  # type: ignore[operator]
        m, em = int(mismatch.sum()), int(mismatch[:, :window].sum())
        naive += m > 0 and stats.binomtest(em, m, window / length).pvalue < 0.05
    assert 0.02 <= rejected / 400 <= 0.085, rejected
    assert naive / 400 > 0.18, naive


def test_a_step_the_format_fixes_is_named_and_left_out(con: duckdb.DuckDBPyConnection) -> None:
    """Step 0 never mismatches (the format fixes it), the rest mismatch uniformly at 0.2: the plain first-10%
    share is depleted (a first-token artefact), two-sided significant; without step 0 it is not."""
    rng = np.random.default_rng(5)
    mismatch = rng.random((200, 20)) < 0.2
    mismatch[:, 0] = False
    row = _row(mismatch, 2)
    assert row["fixed_steps"] == [0]
    assert row["enrichment"] < 0.7 and row["p_value"] < 1e-3  # type: ignore[operator]
    greater = _row(mismatch, 2, "greater")
    assert greater["p_value"] > 0.99  # type: ignore[operator]  # what the one-sided test used to print
    lo, hi = row["enrichment_without_fixed_lo"], row["enrichment_without_fixed_hi"]
    assert lo < 1 < hi and row["p_value_without_fixed"] > 0.01  # type: ignore[operator]
    assert row["enrichment_lo"] < row["enrichment"] < row["enrichment_hi"] < 1  # type: ignore[operator]
    assert row["baseline_share_without_fixed"] == pytest.approx(1 / 19)


def test_early_clustering_is_significant_and_uniform_is_not(con: duckdb.DuckDBPyConnection) -> None:
    add_model(con, "L", 10)
    add_model(con, "S", 1)
    rng = np.random.default_rng(3)
    early = add_run(con, method="oracle")
    add_events(con, early, random_events(rng, samples=30, length=50, cof=0.1))
    flat = add_run(con, method="contrastive")
    n = 30 * 50
    add_events(
        con,
        flat,
        pl.DataFrame(
            {
                "sample_id": np.repeat(np.arange(30), 50).astype(np.int32),
                "step": np.tile(np.arange(50), 30).astype(np.int32),
                "mismatch": rng.random(n) < 0.1,
            }
        ),
    )
    got = early_share(con, ["method"], fraction=0.1).sort("method")
    contrastive, oracle = got.row(0, named=True), got.row(1, named=True)
    assert oracle["enrichment"] > 2 and oracle["p_value"] < 0.01  # 30 samples, clustered: not 1e-6
    assert contrastive["p_value"] > 1e-3
    shares = position_profile(con, ["method"]).filter(pl.col("method") == "oracle").sort("bin")
    assert shares["mismatch_share"][0] == shares["mismatch_share"].max()


def test_early_share_handles_no_mismatches() -> None:
    row = _row(np.zeros((3, 10), bool), 1)
    assert row["p_value"] is None and row["mismatch_share"] is None and row["enrichment"] is None
    assert row["baseline_share"] == 0.1 and row["fixed_steps"] == []


def test_the_delta_interval_agrees_with_a_bootstrap_by_sample_when_samples_are_many() -> None:
    """The enrichment's interval (delta method on its log, clustered by sample, t(k − 1)) against a
    percentile bootstrap by sample on the same 2,000 samples (lengths 20..80, mismatches 2× as likely in the
    first 10%): the ends agree within a tenth of the interval's width."""
    rng = np.random.default_rng(8)
    k = 2000
    n = rng.integers(20, 81, k)
    e = np.ceil(n / 10).astype(int)
    em = rng.binomial(e, 0.2)
    x = np.stack([n, em + rng.binomial(n - e, 0.1), e, em], axis=1).astype(float)  # n, m, e, em
    row = early_share_row(pl.DataFrame(x.astype(int), schema=["tokens", "mismatches", "early_tokens",
                                                              "early_mismatches"], orient="row"))  # fmt: skip
    draws = rng.integers(0, k, (2000, k))
    sums = np.stack([x[d].sum(0) for d in draws])
    ratio = (sums[:, 3] / sums[:, 1]) / (sums[:, 2] / sums[:, 0])
    lo, hi = np.quantile(ratio, [0.025, 0.975])
    width = hi - lo
    assert row["enrichment_lo"] < row["enrichment"] < row["enrichment_hi"]
    assert abs(row["enrichment_lo"] - lo) < width / 10 and abs(row["enrichment_hi"] - hi) < width / 10
    assert 1.6 < row["enrichment"] < 2.4 and row["p_value"] < 1e-6


def test_groups_with_null_and_nan_keys_sum_and_sort_as_polars_does(con: duckdb.DuckDBPyConnection) -> None:
    """Group keys with nulls (slm_tuned) and NaN (threshold): each decile's counts equal a polars group-by
    of the events, sorted with nulls last; the early-share rows are the same groups, nulls first."""
    add_model(con, "L", 10)
    add_model(con, "S", 1)
    rng = np.random.default_rng(4)
    nan = float("nan")
    for tuned, threshold in [
        (None, nan),
        ("b", 0.2),
        ("a", None),
        (None, nan),
        ("a", 0.1),
        ("b", nan),
        (None, 0.2),
    ]:
        run = add_run(con, slm_tuned=tuned)
        con.execute("UPDATE runs SET threshold = ? WHERE run_id = ?", [threshold, run])
        add_events(con, run, random_events(rng, samples=3, length=20, cof=0.3))
    cols = ["slm_tuned", "threshold"]
    events = con.sql(
        "SELECT r.slm_tuned, r.threshold, least(CAST(floor(e.rel_pos * 10) AS INTEGER), 9) AS bin, "
        "e.mismatch FROM token_events e JOIN runs r USING (run_id)"
    ).pl()
    expected = (
        events.group_by([*cols, "bin"])
        .agg(pl.len().alias("tokens"), pl.col("mismatch").sum().alias("mismatches"))
        .sort([*cols, "bin"], nulls_last=True)
    )
    got = position_profile(con, cols)
    assert_frame_equal(got.select(expected.columns), expected, check_dtypes=False)
    early = early_share(con, cols, k=2)
    groups = expected.select(cols).unique().sort(cols)  # polars' default: nulls first
    assert_frame_equal(early.select(cols), groups)
    assert early["samples"].to_list() == [3 * n for n in (1, 2, 1, 1, 1, 1)]
