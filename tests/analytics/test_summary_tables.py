"""Analytics read the summary tables, and get what a scan of the events gives."""

from __future__ import annotations

import duckdb
import numpy as np
import polars as pl
from polars.testing import assert_frame_equal

from analytics.frequency import collaboration_frequency
from analytics.positions import early_share
from analytics.uncertainty import PREDICTORS, mismatch_predictors, unpack
from tests.analytics.conftest import add_events, add_model, add_run, random_events
from warehouse.summaries import TABLES


def _grid_runs(con: duckdb.DuckDBPyConnection) -> None:
    """Two runs whose predictor values sit on the summary grid (quarters: exact in float32, one per cell)."""
    add_model(con, "L", 10)
    add_model(con, "S", 1)
    rng = np.random.default_rng(11)
    for method, cof in (("oracle", 0.1), ("contrastive", 0.3)):
        events = random_events(rng, samples=12, length=37, cof=cof)
        events = events.with_columns(
            ((pl.col("s1_entropy") * 4).round(0) / 4).cast(pl.Float32),
            (pl.col("s1_prob") * 8).round(0).cast(pl.Float32) / 8,
            (pl.col("s1_margin") * 8).floor().cast(pl.Float32) / 8,
        )
        add_events(con, add_run(con, method=method), events)


def test_binned_predictors_equal_the_exact_scan_on_grid_values(con: duckdb.DuckDBPyConnection) -> None:
    _grid_runs(con)
    for group_by in (["run_id"], ["method"], ["llm", "slm"]):
        binned = mismatch_predictors(con, group_by)  # histogram_sums
        exact = mismatch_predictors(con, group_by, exact=True)  # token_events
        assert_frame_equal(binned, exact, check_exact=False, rel_tol=1e-9, abs_tol=1e-12)


def test_packs_decode_to_the_histogram_sums_at_both_widths(con: duckdb.DuckDBPyConnection) -> None:
    """Each run's packs (written as ingest writes them) unpack to its predictor rows of histogram_sums; a
    count of 2**31 or more is packed 8 bytes wide."""
    _grid_runs(con)
    big = "WHERE run_id = (SELECT min(run_id) FROM runs) AND feature = 'entropy'"
    con.execute(
        f"UPDATE histogram_sums SET tokens = tokens + 2 ** 33, mismatches = mismatches + 2 ** 32 {big}"
    )
    packs = next(t for t in TABLES if t.name == "histogram_packs")
    packs.add(con, "runs")  # repack every run, as a batch of each would
    rows = con.execute("SELECT run_id, feature, lo, width, counts FROM histogram_packs").fetchall()
    assert sorted({r[3] for r in rows}) == [4, 8]
    names = list(PREDICTORS)
    run, feature, lo, width, counts = (list(c) for c in zip(*rows, strict=True))
    code, gid, cell, n, pos = unpack([names.index(f) for f in feature], run, lo, width, counts, max(run))
    got = sorted(
        zip(
            [names[c] for c in code],
            gid.tolist(),
            *(x.astype(np.int64).tolist() for x in (cell, n, pos)),
            strict=True,
        )
    )
    marks = ", ".join("?" for _ in names)
    want = con.execute(
        "SELECT feature, run_id, cell, tokens, mismatches FROM histogram_sums "
        f"WHERE feature IN ({marks}) ORDER BY ALL",
        names,
    ).fetchall()
    assert len(want) > 50 and max(r[3] for r in want) > 2**33
    assert got == want


def test_early_share_from_summaries_equals_the_event_scan(con: duckdb.DuckDBPyConnection) -> None:
    _grid_runs(con)
    # Fractions on the 0.001 grid count the summaries' rel_pos cells; a fraction 1e-12 above is off the
    # grid, so it compares rel_pos itself, and selects the same tokens (samples of 37 tokens: no step / 37
    # lies in between).
    for fraction in (0.1, 0.25, 0.7):
        on_grid = early_share(con, ["method"], fraction=fraction)
        off_grid = early_share(con, ["method"], fraction=fraction + 1e-12)  # a scan of token_events
        assert_frame_equal(on_grid.drop("window"), off_grid.drop("window"))
    by_k = early_share(con, k=5)
    steps = con.sql("SELECT run_id, count_if(step < 5) AS n FROM token_events GROUP BY 1 ORDER BY 1").pl()
    assert by_k["early_tokens"].to_list() == steps["n"].to_list()


def test_per_sample_cof_reads_sample_moments(con: duckdb.DuckDBPyConnection) -> None:
    _grid_runs(con)
    cof = collaboration_frequency(con, ["method"])
    assert cof["samples"].to_list() == [12, 12] and cof["tokens"].to_list() == [12 * 37] * 2
    con.execute("DELETE FROM sample_sums")  # the per-run sums, not the samples' rows nor the events
    assert collaboration_frequency(con, ["method"]).equals(cof)
    con.execute("DELETE FROM sample_moments")
    assert collaboration_frequency(con, ["method"]).height == 0
