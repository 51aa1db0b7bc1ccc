"""The early-share test read from summary rows equals an independent recomputation from the token events of a
warehouse filled through the real staging and ingest path, for windows the summaries count and for those
counted from the events."""

from __future__ import annotations

from pathlib import Path

import duckdb
import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from polars.testing import assert_frame_equal
from scipy import stats

from analytics.positions import CONFIDENCE, FIXED_P, FIXED_STEPS, early_share, early_window
from bench.bench_ingest import manifest, synthetic_samples
from tests.warehouse.test_summaries import batch_events
from warehouse.db import duckdb_connection
from warehouse.ingest import ingest_pending
from warehouse.migrate import upgrade
from warehouse.settings import staging_dir
from warehouse.staging import StagingWriter
from warehouse.summaries import EARLY_STEPS

# (k, fraction): served by sample_sums (k ≤ EARLY_STEPS; 10% and 25%), and counted from the events (k past
# the bound; 30% on the grid but not served; a fraction off the 0.001 grid)
WINDOWS = [(1, None), (5, None), (EARLY_STEPS, None), (EARLY_STEPS + 1, None), (None, 0.1), (None, 0.25),
           (None, 0.3), (None, 0.1 + 1e-12)]  # fmt: skip


def _without_mismatch_at_step_0(events: pa.Table) -> pa.Table:
    """Step 0 never mismatches (as a prompt format can fix it): its token is System 1's."""
    first = pc.equal(events["step"], 0)
    at = events.schema.get_field_index
    events = events.set_column(at("mismatch"), "mismatch", pc.and_(events["mismatch"], pc.invert(first)))
    return events.set_column(
        at("token_id"), "token_id", pc.if_else(first, events["s1_token_id"], events["token_id"])
    )


@pytest.fixture(scope="module")
def ingested(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two runs staged in batches and ingested: run `fixed` never mismatches at step 0, run `free` does."""
    path = tmp_path_factory.mktemp("early") / "fsgen.duckdb"
    upgrade(path)
    rng = np.random.default_rng(23)
    for name in ("fixed", "free"):
        writer = StagingWriter(staging_dir(path), name)
        writer.write_manifest(manifest(name))
        for first in (0, 30, 60):  # samples of 1..60 tokens: some shorter than the step windows
            lengths = [int(n) for n in rng.integers(1, 61, 30)]
            events = batch_events(rng, first, lengths)
            if name == "fixed":
                events = _without_mismatch_at_step_0(events)
            writer.write_batch(first, synthetic_samples(range(first, first + 30)), events)
    with duckdb_connection(path) as con:
        ingest_pending(con, path)
    return path


def _in_window(k: int | None, fraction: float | None) -> pl.Expr:
    if k is not None:
        return pl.col("step") < k
    assert fraction is not None
    cells = fraction * 1000
    if abs(cells - round(cells)) < 1e-9:  # the 0.001 grid of rel_pos cells
        return (pl.col("rel_pos").cast(pl.Float64) * 1000).floor() < round(cells)
    return pl.col("rel_pos").cast(pl.Float64) < fraction


def _stats(x: np.ndarray) -> dict[str, float | None]:
    """Baseline share, enrichment with its interval (delta method through the covariance of the per-sample
    means) and the two-sided clustered score test, of per-sample rows x [k, 4]: n, m, e, em; None where a
    figure is undefined (a division by zero)."""
    k = x.shape[0]
    with np.errstate(divide="ignore", invalid="ignore"):
        got = _stats_of(x, k)
    return {key: float(v) if np.isfinite(v) else None for key, v in got.items()}


def _stats_of(x: np.ndarray, k: int) -> dict[str, float]:
    n, m, e, em = x.sum(0)
    enrich = (em / m) / (e / n)
    grad = np.array([1 / n, -1 / m, -1 / e, 1 / em]) * k  # of log R at the means
    half = stats.t.ppf((1 + CONFIDENCE) / 2, k - 1) * np.sqrt(grad @ np.cov(x.T) @ grad / k)
    d = x[:, 3] - x[:, 1] * x[:, 2] / x[:, 0]
    p = 2 * stats.t.sf(abs(d.sum()) / np.sqrt((d**2).sum()), k - 1)
    return {"baseline_share": e / n, "enrichment": enrich, "enrichment_lo": enrich * np.exp(-half),
            "enrichment_hi": enrich * np.exp(half), "p_value": p}  # fmt: skip


def _recompute(events: pl.DataFrame, k: int | None, fraction: float | None) -> dict[str, object]:
    """One run's early-share figures from its token events, computed here without analytics.positions."""
    marked = events.with_columns(_in_window(k, fraction).alias("early"))
    per = marked.group_by("sample_id").agg(
        pl.len().alias("n"), pl.col("mismatch").sum().alias("m"), pl.col("early").sum().alias("e"),
        (pl.col("early") & pl.col("mismatch")).sum().alias("em"),
        *[(pl.col("step") == s).sum().alias(f"at_{s}") for s in range(FIXED_STEPS)],
        *[((pl.col("step") == s) & pl.col("early")).sum().alias(f"early_at_{s}") for s in range(FIXED_STEPS)],
    ).sort("sample_id")  # fmt: skip
    x = per.select("n", "m", "e", "em").to_numpy().astype(float)
    rate = x[:, 1].sum() / x[:, 0].sum()
    fixed = []
    for s in range(FIXED_STEPS):
        at = marked.filter(pl.col("step") == s)
        if at.height and not at["mismatch"].any() and (1 - rate) ** at.height <= FIXED_P:
            fixed.append(s)
    y = x.copy()
    for s in fixed:
        y[:, 0] -= per[f"at_{s}"].to_numpy()
        y[:, 2] -= per[f"early_at_{s}"].to_numpy()
    without = _stats(y[y[:, 0] > 0]) if fixed else dict.fromkeys(_stats(x))
    sums = dict(
        zip(("tokens", "mismatches", "early_tokens", "early_mismatches"), x.sum(0).astype(int), strict=True)
    )
    named = {"baseline_share": "baseline_share_without_fixed", "enrichment": "enrichment_without_fixed",
             "enrichment_lo": "enrichment_without_fixed_lo", "enrichment_hi": "enrichment_without_fixed_hi",
             "p_value": "p_value_without_fixed"}  # fmt: skip
    return {"samples": per.height, **sums, **_stats(x), "fixed_steps": fixed,
            **{named[key]: v for key, v in without.items()}}  # fmt: skip


@pytest.mark.parametrize(("k", "fraction"), WINDOWS)
def test_summary_rows_equal_an_independent_recomputation(
    ingested: Path, k: int | None, fraction: float | None
) -> None:
    with duckdb.connect(str(ingested), read_only=True) as con:
        got = early_share(con, k=k, fraction=fraction)
        scanned = early_share(con, k=k, fraction=fraction, from_events=True)
        events = con.sql("SELECT * FROM token_events").pl()
    assert_frame_equal(got, scanned, check_exact=False, rel_tol=1e-12)
    assert got["fixed_steps"].to_list() == [[0], []]  # run `fixed` (ingested first), run `free`
    for row in got.iter_rows(named=True):
        want = _recompute(events.filter(pl.col("run_id") == row["run_id"]), k, fraction)
        for key, value in want.items():
            assert row[key] == (pytest.approx(value, rel=1e-9) if isinstance(value, float) else value), key


@pytest.mark.parametrize(("k", "fraction"), [w for w in WINDOWS if early_window(*w).served])
def test_runs_together_from_their_moments_equal_an_independent_recomputation(
    ingested: Path, k: int | None, fraction: float | None
) -> None:
    """Both runs in one group (step 0 mismatches in run `free`: no fixed step), read from `window_moments`."""
    with duckdb.connect(str(ingested), read_only=True) as con:
        got = early_share(con, ["method"], k=k, fraction=fraction)
        scanned = early_share(con, ["method"], k=k, fraction=fraction, from_events=True)
        events = con.sql("SELECT * FROM token_events").pl()
    assert_frame_equal(got, scanned, check_exact=False, rel_tol=1e-12)
    assert got["fixed_steps"].to_list() == [[]]
    samples = events.with_columns((pl.col("run_id") * 10_000 + pl.col("sample_id")).alias("sample_id"))
    want = _recompute(samples, k, fraction)  # one sample id across the runs
    for key, value in want.items():
        assert got.row(0, named=True)[key] == (
            pytest.approx(value, rel=1e-9) if isinstance(value, float) else value
        ), key
