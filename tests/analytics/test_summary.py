"""The headline: right numbers on a small sweep, fast, and no failure when there is too little to fit."""

from __future__ import annotations

import time
from pathlib import Path

import duckdb
import polars as pl
import pytest

from analytics.summary import cof_with_accuracy, format_headline, headline, run_table
from tests.analytics.conftest import add_events, add_model, add_run, build_sweep, random_events


def test_headline_on_a_small_sweep(con: duckdb.DuckDBPyConnection, empty_warehouse: Path) -> None:
    build_sweep(con)
    con.close()
    started = time.perf_counter()
    h = headline(empty_warehouse)
    assert time.perf_counter() - started < 1.0
    assert h.runs == 6 and h.cof.height == 5  # the `never` run has no CoF row
    assert h.fits["note"][0].startswith("not checked out of sample") and h.fits["pairs"].to_list() == [5]
    assert h.entropy_auroc["auroc"][0] > 0.6
    assert h.early["enrichment"][0] > 1.5 and h.early["p_value"][0] < 1e-3
    row = h.cof.filter((pl.col("llm") == "L") & (pl.col("slm") == "S")).row(0, named=True)
    assert (row["param_ratio"], row["acc_collab"], row["acc_llm"], row["acc_slm"]) == (16.0, 0.5, 0.5, 0.25)
    text = format_headline(h)
    for part in ("CoF by pair and method", "Scaling law", "gamma", "auroc", "first 10%", "| L   | S   |"):
        assert part in text


def test_headline_with_too_few_pairs_says_so(con: duckdb.DuckDBPyConnection) -> None:
    add_model(con, "L", 10)
    add_model(con, "S", 1)
    run = add_run(con)
    add_events(con, run, random_events(__import__("numpy").random.default_rng(0), 2, 10, 0.1))
    h = headline(con)
    assert h.fits["gamma"].to_list() == [None]
    assert "too few pairs to fit (1 distinct ratio(s), need 3)" in format_headline(h)


def test_headline_on_an_empty_warehouse(con: duckdb.DuckDBPyConnection) -> None:
    text = format_headline(headline(con))
    assert "0 complete run(s)" in text and "(no runs)" in text and "(no pairs to fit)" in text


def test_accuracy_lookup_by_hand() -> None:
    base = {"slm_tuned": None, "dataset": "d", "param_ratio": 10.0, "tokens": 10, "mismatches": 1}
    runs = pl.DataFrame(
        [
            {
                **base,
                "run_id": 1,
                "llm": "L",
                "slm": "S",
                "method": "contrastive",
                "router": "always",
                "checked": 10,
                "correct": 7,
            },
            {
                **base,
                "run_id": 2,
                "llm": "L",
                "slm": "S",
                "method": "oracle",
                "router": "always",
                "checked": 10,
                "correct": 9,
            },
            {
                **base,
                "run_id": 3,
                "llm": "X",
                "slm": "S",
                "method": "oracle",
                "router": "never",
                "checked": 4,
                "correct": 1,
            },
        ],
        schema_overrides={"slm_tuned": pl.Utf8},
    )
    got = cof_with_accuracy(runs).filter(pl.col("method") == "contrastive").row(0, named=True)
    assert (got["acc_collab"], got["acc_llm"], got["acc_slm"]) == (0.7, 0.9, 0.25)
    assert got["cof"] == pytest.approx(0.1)


def test_run_table_reads_only_complete_runs(con: duckdb.DuckDBPyConnection) -> None:
    build_sweep(con)
    add_run(con, status="running")
    assert run_table(con).height == 6
