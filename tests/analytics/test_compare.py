"""Two runs compared: per-sample differences paired by prompt, where tokens part; CLI and /v1/compare."""

from __future__ import annotations

from pathlib import Path

import duckdb
import numpy as np
import pytest
from scipy import stats

from analytics.compare import compare_runs, main
from tests.synthetic import compared_runs


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int, int]:
    path = tmp_path_factory.mktemp("compare") / "fsgen.duckdb"
    return (path, *compared_runs(path))


def by_hand(path: Path, a: int, b: int) -> tuple[np.ndarray, list[int]]:
    """Per-sample CoF differences (B − A, same prompt = same sample id here) and first differing steps."""
    with duckdb.connect(str(path), read_only=True) as con:
        cof = {
            r: dict(con.execute(
                "SELECT sample_id, mismatches / tokens FROM sample_sums WHERE run_id = ?", [r]
            ).fetchall())
            for r in (a, b)
        }  # fmt: skip
        toks = {
            r: dict(con.execute(
                "SELECT sample_id, list(token_id ORDER BY step) FROM token_events WHERE run_id = ? "
                "GROUP BY ALL",
                [r],
            ).fetchall())
            for r in (a, b)
        }  # fmt: skip
    diffs = np.array([cof[b][s] - cof[a][s] for s in sorted(cof[a])])
    steps = []
    for s in sorted(toks[a]):
        x, y = toks[a][s], toks[b][s]
        parts = [i for i, (u, v) in enumerate(zip(x, y, strict=False)) if u != v]
        if parts or len(x) != len(y):
            steps.append(parts[0] if parts else min(len(x), len(y)))
    return diffs, steps


def test_compare_pairs_by_prompt(two_runs: tuple[Path, int, int]) -> None:
    path, a, b = two_runs
    c = compare_runs(path, a, b)
    diffs, steps = by_hand(path, a, b)
    row = c.metrics.filter(c.metrics["metric"].str.starts_with("cof")).row(0, named=True)
    half = stats.t.ppf(0.975, len(diffs) - 1) * diffs.std(ddof=1) / np.sqrt(len(diffs))
    assert c.paired == 5 and row["samples"] == 5 and row["interval"].startswith("paired by prompt")
    assert row["difference"] == pytest.approx(diffs.mean())
    assert (row["ci_lo"], row["ci_hi"]) == pytest.approx((diffs.mean() - half, diffs.mean() + half))
    assert c.first_differences["step"].to_list() == steps and steps
    assert set(c.settings) >= {"method", "lam", "experiment"}
    assert c.settings["lam"] == (None, 1.5)  # λ is contrastive's: the oracle run has none (not 0.5)
    # neither run is speculative: no speed-up (analytics.speedup's), and no tokens/s ratio in its place
    assert not [m for m in c.metrics["metric"].to_list() if m.startswith("speed")]


def test_compare_cli(two_runs: tuple[Path, int, int], capsys: pytest.CaptureFixture[str]) -> None:
    path, a, b = two_runs
    assert main([str(a), str(b), "--warehouse", str(path)]) == 0
    out = capsys.readouterr().out
    assert (
        "5 samples paired by prompt" in out and f"/runs/{a}/samples/" in out and f"/runs/{b}/samples/" in out
    )
    assert main([str(a), "999", "--warehouse", str(path)]) == 2
    assert capsys.readouterr().err.startswith("error: no run 999")
