"""The headline: right numbers on a small sweep, fast, and no failure when there is too little to fit."""

from __future__ import annotations

import time
from pathlib import Path

import duckdb
import numpy as np
import polars as pl
import pytest

from analytics.scaling import GroupFit, fit_cof
from analytics.summary import (
    cof_with_accuracy,
    format_compact_headline,
    format_headline,
    headline,
    law_power,
    paper_law_column,
    power_lines,
    run_table,
)
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
    assert row["samples"] == 8 and row["cof_lo"] < row["cof"] < row["cof_hi"]
    assert row["cof_mean_lo"] < row["cof_mean"] < row["cof_mean_hi"] and row["design_effect"] > 0
    assert h.fits["law"][0] in ("constant", "log_ratio", "log_sizes") and h.fits["law_loo_rmse"][0] > 0
    text = format_headline(h)
    for part in (
        "CoF by pair and method",
        "cof_lo",
        "cof_mean_lo",
        "ratio-estimator interval",
        "Which law the pairs support",
        "law_loo_rmse",
        "runner_up",
        "no finding: not checked out of sample",
        "skipped in oracle/gsm8k: power_ratio needs 4 distinct ratios",
        "auroc",
        "first 10%",
        "| L   | S   |",
    ):
        assert part in text, part


def test_headline_with_too_few_pairs_says_so(con: duckdb.DuckDBPyConnection) -> None:
    add_model(con, "L", 10)
    add_model(con, "S", 1)
    run = add_run(con)
    add_events(con, run, random_events(__import__("numpy").random.default_rng(0), 2, 10, 0.1))
    h = headline(con)
    assert h.fits["gamma"].to_list() == [None] and h.fits["law"].to_list() == [None]
    text = format_headline(h)
    assert "too few pairs to fit (1 distinct ratio(s), need 3)" in text
    assert "oracle/gsm8k: no law fitted: no law can be fitted and checked on 1 pair(s)" in text


def test_headline_on_an_empty_warehouse(con: duckdb.DuckDBPyConnection) -> None:
    text = format_headline(headline(con))
    assert "0 complete run(s)" in text and "(no runs)" in text and "(no pairs to fit)" in text


def test_accuracy_lookup_by_hand() -> None:
    base = {"slm_tuned": None, "dataset": "d", "param_ratio": 10.0, "tokens": 10, "mismatches": 1,
            "setup": None, "identity": None, "baseline": False}  # fmt: skip
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
                "baseline": True,
            },
        ],
        schema_overrides={"slm_tuned": pl.Utf8, "setup": pl.Utf8, "identity": pl.Utf8},
    )
    got = cof_with_accuracy(runs).filter(pl.col("method") == "contrastive").row(0, named=True)
    assert (got["acc_collab"], got["acc_llm"], got["acc_slm"]) == (0.7, 0.9, 0.25)
    assert got["cof"] == pytest.approx(0.1)


def test_run_table_reads_only_complete_runs(con: duckdb.DuckDBPyConnection) -> None:
    build_sweep(con)
    add_run(con, status="running")
    assert run_table(con).height == 6


def _power_case(samples: int) -> tuple[tuple[GroupFit, ...], pl.DataFrame]:
    """Six pairs on a + b·ln R with per-sample sd 0.1 over `samples` samples each."""
    nl = np.array([4e9, 7e9, 14e9, 14e9, 32e9, 32e9])
    ns = np.array([0.5e9, 1.8e9, 1.8e9, 4e9, 4e9, 0.5e9])
    cof = 0.05 + 0.02 * np.log(nl / ns) + np.array([0.004, -0.003, 0.002, -0.004, 0.003, -0.001])
    group = GroupFit("oracle", "d", 6, None, "no fit", fit_cof(nl, ns, cof))
    half = 2.0 * 0.1 / np.sqrt(samples)
    frame = pl.DataFrame(
        {
            "method": "oracle",
            "dataset": "d",
            "router": "always",
            "llm_params": nl,
            "slm_params": ns,
            "cof_sd": 0.1,
            "samples": samples,
            "cof_lo": cof - half,
            "cof_hi": cof + half,
        }
    )
    return (group,), frame


def test_power_calculation_says_how_many_samples_would_tell_the_laws_apart() -> None:
    groups, frame = _power_case(24)
    laws = groups[0].laws
    assert laws is not None and laws.runner_up is not None
    power = law_power(groups, frame)
    row = power.row(0, named=True)
    nl, ns = frame["llm_params"].to_numpy(), frame["slm_params"].to_numpy()
    gap = laws.chosen.value(nl, ns) - laws.runner_up.value(nl, ns)
    delta = float(np.sqrt(np.mean(gap**2)))
    want = int(np.ceil(((1.959964 + 0.841621) * 0.1 / delta) ** 2))
    assert row["difference"] == pytest.approx(delta) and row["samples_needed"] == want
    assert want > 24 and row["distinguishable"] is False  # the case is built under-powered
    lines = power_lines(power)
    assert len(lines) == 1 and f"about {want:,} samples per pair would" in lines[0]
    enough = law_power(*_power_case(want))
    assert enough["distinguishable"].to_list() == [True] and power_lines(enough) == []


def test_the_compact_headline_is_a_screenful_with_a_column_per_method(
    con: duckdb.DuckDBPyConnection, empty_warehouse: Path
) -> None:
    build_sweep(con)
    con.close()
    h = headline(empty_warehouse)
    text = format_compact_headline(h, "Full tables: python -m analytics")
    full = format_headline(h)
    assert len(text.splitlines()) < len(full.splitlines()) and text.endswith(
        "Full tables: python -m analytics"
    )
    cells = [
        [c.strip() for c in line.strip("|").split("|")] for line in text.split("\n\n")[1].splitlines()[3:]
    ]
    always = h.cof.filter(pl.col("router") == "always")
    header = [c.strip() for c in text.split("\n\n")[1].splitlines()[1].strip("|").split("|")]
    assert header[:4] == ["llm", "slm", "param_ratio", "dataset"]
    assert sorted(header[4:]) == sorted(always["method"].unique().to_list())
    # one row per pair and dataset, each CoF under its method's column
    assert len(cells) == always.select("llm", "slm", "dataset").unique().height
    for r in always.iter_rows(named=True):
        (row,) = [c for c in cells if (c[0], c[1], c[3]) == (r["llm"], r["slm"], r["dataset"])]
        assert float(row[header.index(r["method"])]) == pytest.approx(r["cof"], rel=1e-3)
    assert "Which law the pairs support" in text and "entropy_auroc" in text
    # the per-setup table: one row per method, dataset and settings (never one per join partner)
    section = next(b for b in text.split("\n\n") if b.startswith("Per method"))
    head = [c.strip() for c in section.splitlines()[1].strip("|").split("|")]
    assert head[:4] == ["method", "dataset", "settings", "entropy_auroc"]
    rows = [tuple(c.strip() for c in line.strip("|").split("|")[:3]) for line in section.splitlines()[3:]]
    assert (
        len(rows) == len(set(rows)) == h.entropy_auroc.select("method", "dataset", "settings").unique().height
    )


def test_the_compact_paper_law_is_the_verdict_without_its_reason() -> None:
    """The compact headline's cell holds the verdict whole (a long reason was cut off mid-word at the
    table's 80 characters); the full tables keep the reason."""
    why = "alpha at its lower bound 0.001; alpha's bootstrap interval [0.001, 4.2] spans the search range"
    fits = pl.DataFrame(
        {
            "gamma": [0.5, None, None],
            "alpha": [0.3, None, None],
            "beta": [0.01, None, None],
            "note": [
                "ok",
                "not checked out of sample: too few pairs",
                f"unidentified, read as log_ratio: {why}",
            ],
        }
    )
    short = fits.select(paper_law_column(fits, short=True))["paper_law"].to_list()
    full = fits.select(paper_law_column(fits))["paper_law"].to_list()
    assert short == [
        "0.5*R^(-0.3) + 0.01", "no finding: not checked out of sample", "unidentified, read as log_ratio"
    ]  # fmt: skip
    assert full == [short[0], "no finding: not checked out of sample (see skipped)", fits["note"][2]]
