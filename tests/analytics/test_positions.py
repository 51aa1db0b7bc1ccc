"""Where mismatches fall: decile shares and the early share against the uniform baseline."""

from __future__ import annotations

import duckdb
import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal
from scipy import stats

from analytics.positions import early_share, early_share_test, position_profile
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
    got = early_share(con, k=2).row(0, named=True)
    # first 2 tokens hold 4 of 20 tokens (baseline 0.2) and 3 of 4 mismatches
    assert (got["run_id"], got["early_tokens"], got["early_mismatches"]) == (run, 4, 3)
    assert got["mismatch_share"] == 0.75 and got["baseline_share"] == 0.2
    assert got["enrichment"] == pytest.approx(3.75)
    assert got["p_value"] == pytest.approx(stats.binomtest(3, 4, 0.2, alternative="greater").pvalue)
    assert got["window"] == "first 2 tokens"
    frac = early_share(con, fraction=0.1).row(0, named=True)
    assert (frac["early_tokens"], frac["early_mismatches"], frac["window"]) == (2, 2, "first 10% of tokens")
    with pytest.raises(ValueError, match="either k"):
        early_share(con, k=2, fraction=0.1)


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
    assert oracle["enrichment"] > 2 and oracle["p_value"] < 1e-6
    assert contrastive["p_value"] > 1e-3
    shares = position_profile(con, ["method"]).filter(pl.col("method") == "oracle").sort("bin")
    assert shares["mismatch_share"][0] == shares["mismatch_share"].max()


def test_early_share_test_handles_no_mismatches() -> None:
    sums = pl.DataFrame({"tokens": [10], "mismatches": [0], "early_tokens": [1], "early_mismatches": [0]})
    row = early_share_test(sums).row(0, named=True)
    assert row["p_value"] is None and row["mismatch_share"] is None and row["enrichment"] is None
    assert row["baseline_share"] == 0.1
