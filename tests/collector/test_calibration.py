"""Calibration once: a pair's costs are timed once per (pair, device, dtype, batch size) and reused; a run
needs them at batch 1 and at its own batch size, no other."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import duckdb
import pytest

from analytics.batch_advice import advise_by_batch_size, best_by_batch_size, cost_coverage, coverage_lines
from collector.calibration import covers, needed
from collector.config import RunConfig
from collector.costs import Cost
from collector.engine import RunSummary, run_collection
from tests.collector.helpers import one_thread  # noqa: F401
from tests.conftest import TinyModels
from warehouse.vocabulary import CALIBRATION_KINDS

pytestmark = pytest.mark.usefixtures("one_thread")


def _costs(path: Path, run_id: int | None) -> dict[tuple[str, int, int], tuple[float, str | None]]:
    with duckdb.connect(str(path), read_only=True) as con:
        rows = con.execute(
            "SELECT kind, tokens, batch_size, seconds, measured_by FROM run_costs WHERE run_id = ?", [run_id]
        ).fetchall()
    return {(k, n, b): (s, m) for k, n, b, s, m in rows}


def _calibration(
    costs: dict[tuple[str, int, int], tuple[float, str | None]],
) -> dict[tuple[str, int, int], float]:
    return {key: s for key, (s, _) in costs.items() if key[0] in CALIBRATION_KINDS}


def test_a_pair_is_timed_once_then_reused_from_the_warehouse_with_its_origin(
    tiny_models: TinyModels, warehouse_path: Path, prompts_file: Path
) -> None:
    base = RunConfig(llm=str(tiny_models.llm), slm=str(tiny_models.slm), prompts=str(prompts_file),
                     max_new_tokens=6, batch_size=3)  # fmt: skip
    first = run_collection(base, warehouse_path, progress=False)
    assert first.calibration == "measured here"
    measured = _costs(warehouse_path, first.run_id)
    assert all(origin is None for _, origin in measured.values())
    # the draft/verify cycle and the LLM's generate at batch 1 and at the run's batch size, no other
    for kind in ("cycle", "llm_generate"):
        assert {b for k, _, b in measured if k == kind} == {1, 3}

    # Another method on the same pair: nothing timed, every calibration cost copied with its origin.
    spec = replace(base, method="speculative", draft_k=3)
    second = run_collection(spec, warehouse_path, progress=False)
    assert second.calibration == f"reused from run {first.run_id}"
    reused = _costs(warehouse_path, second.run_id)
    assert _calibration(reused) == _calibration(measured)
    assert {origin for key, (_, origin) in reused.items() if key[0] in CALIBRATION_KINDS} == {first.run_key}
    assert second.calibration_s < first.calibration_s / 10
    assert reused[("calibration", 0, 3)][0] == pytest.approx(second.calibration_s)
    assert reused[("decode", second.tokens, 3)][1] is None  # the run's own decode is its own

    # --recalibrate: timed again, here; a draft longer than the calibration timed is not covered by it.
    again = run_collection(replace(base, recalibrate=True), warehouse_path, progress=False)
    assert again.calibration == "measured here"
    assert all(origin is None for _, origin in _costs(warehouse_path, again.run_id).values())
    timed = [Cost(k, n, b, s) for (k, n, b), s in _calibration(measured).items()]
    assert covers(timed, needed(replace(spec, draft_k=8))) and not covers(
        timed, needed(replace(spec, draft_k=9))
    )

    # A run at another batch size: batch 1 reused (from the newest run that timed it), its own size timed.
    wider = run_collection(replace(base, batch_size=2), warehouse_path, progress=False)
    assert wider.calibration == f"reused from run {again.run_id} at batch 1, measured here at batch 2"
    origins = {(k, b): m for (k, _, b), (_, m) in _costs(warehouse_path, wider.run_id).items()}
    assert origins[("llm_generate", 1)] == again.run_key and origins[("llm_generate", 2)] is None
    run_collection(replace(base, batch_size=4, calibrate=False), warehouse_path, progress=False)
    _check_batch_advice(warehouse_path, first)


def _check_batch_advice(path: Path, oracle: RunSummary) -> None:
    """The advisor predicts a speed-up at every batch size the pair was timed at, at no other, and says
    which batch sizes its runs used without costs."""
    candidates = advise_by_batch_size(path)
    mine = candidates.filter(candidates["oracle_run_id"] == oracle.run_id)
    assert sorted(set(mine["batch_size"].to_list())) == [1, 3]
    best = best_by_batch_size(candidates)
    assert best["batch_size"].to_list() == [1, 2, 3]  # one pair, one dataset: the best K at each size timed
    assert (best["predicted_speedup"] > 0).all() and (best["baseline_tokens_per_s"] > 0).all()
    coverage = cost_coverage(path)
    assert coverage.select("timed", "ran", "untimed").rows() == [([1, 2, 3], [2, 3, 4], [4])]
    assert coverage_lines(coverage)[0].endswith(
        "costs timed at batch 1, 2, 3; none at batch 4, where its runs recorded no calibration"
    )


def test_a_baseline_run_takes_no_calibration(
    tiny_models: TinyModels, warehouse_path: Path, prompts_file: Path
) -> None:
    cfg = RunConfig(llm=str(tiny_models.slm), slm=str(tiny_models.slm), prompts=str(prompts_file),
                    router="never", max_new_tokens=4, samples=2)  # fmt: skip
    summary = run_collection(cfg, warehouse_path, progress=False)
    assert summary.calibration == "off"
    assert set(_costs(warehouse_path, summary.run_id)) == {("decode", summary.tokens, cfg.batch_size)}
