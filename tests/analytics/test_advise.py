"""The advisor: predictions from hand-built traces and costs, the ranking, and --verify on the zoo."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import numpy as np
import polars as pl
import pytest
import torch

from analytics.advise import ADVICE_SCHEMA, RunCosts, advise, best_with_runner_up, main, predict
from analytics.source import AnalyticsError
from analytics.speculative import OracleTrace, replay_cycles
from warehouse.migrate import upgrade


def _trace(matches: list[list[bool]], prob: float = 0.9) -> OracleTrace:
    n = np.array([len(m) for m in matches], dtype=np.int64)
    flat = np.array([x for m in matches for x in m], dtype=bool)
    return OracleTrace(
        run_id=1, sample_id=np.arange(len(n), dtype=np.int32),
        start=np.concatenate([[0], np.cumsum(n)[:-1]]).astype(np.int64), n_tokens=n, match=flat,
        s1_prob=np.full(len(flat), prob, np.float32), s1_entropy=np.full(len(flat), 0.1, np.float32),
        accept_prob=np.full(len(flat), 0.5, np.float32),
    )  # fmt: skip


def test_replay_by_hand() -> None:
    # K = 2: cycle 0 at 0 accepts 2 (keeps 3), cycle 1 at 3 rejects at once (keeps 1), cycle 2 at 4: one
    # token left, a match that the sample's end cuts: 0 of 0 recorded.
    trace = _trace([[True, True, True, False, True]])
    cycles = replay_cycles(trace, 2)
    assert cycles["accepted"].to_list() == [2, 0, 0] and cycles["drafted"].to_list() == [2, 2, 0]
    assert int(cycles["accepted"].sum()) + cycles.height == 5
    stopped = replay_cycles(trace, 2, "max_prob", 0.95)  # never confident: one draft per cycle
    assert stopped["drafted"].to_list() == [1, 1, 0] and stopped["accepted"].to_list() == [1, 1, 0]


def test_prediction_is_the_replayed_cycles_times_their_measured_costs() -> None:
    trace = _trace([[True, True, True, False, True], [False, False]])
    costs = RunCosts({1: 1.0, 2: 2.0, 4: 3.0}, prefill_s=0.5, baseline_tokens_per_s=2.0)
    p = predict(trace, costs, 2)
    cycles = replay_cycles(trace, 2)
    assert p.cycles == cycles.height == 5 and p.tokens == 7
    expected_s = 2 * 0.5 + 5 * 2.0  # no stop rule: every cycle drafts K = 2 (a cut one records fewer)
    assert p.predicted_tokens_per_s == pytest.approx(7 / expected_s)
    assert p.predicted_speedup == pytest.approx(7 / expected_s / 2.0)
    assert p.acceptance == pytest.approx(2 / (2 + 1 + 1 + 1))  # accepted / verified positions
    assert costs.cycle(3) == pytest.approx(2.5)  # between measured lengths: linear


def test_a_stop_rule_cycle_costs_the_drafting_of_the_token_it_stopped_at() -> None:
    trace = _trace([[True, True, True, False, True]])
    costs = RunCosts({1: 1.0, 2: 2.0}, 0.5, 2.0, stop_cycle_s={2: 5.0, 4: 9.0})
    p = predict(trace, costs, 2, "max_prob", 0.95)  # never confident: drafted 1, 1, then a cut cycle
    assert p.cycles == 3
    assert p.predicted_tokens_per_s == pytest.approx(5 / (0.5 + 3 * 5.0))  # each drafted 1 and checked a 2nd
    assert costs.stop_cycle(2, 4) == pytest.approx(7.0) and costs.stop_cycle(4, 4) == pytest.approx(9.0)
    no_stop_timings = RunCosts({1: 1.0, 2: 2.0}, 0.5, 2.0)  # older runs: the plain cycle
    assert predict(trace, no_stop_timings, 2, "max_prob", 0.95).predicted_tokens_per_s == pytest.approx(
        5 / (0.5 + 3 * 1.0)
    )


def test_best_and_runner_up() -> None:
    rows = [
        ("L", "d", "a", 3, 1.5), ("L", "d", "a", 2, 1.4), ("L", "d", "b", 2, 1.2), ("M", "d", "a", 1, 0.9),
        ("M", "d", "a", 2, 0.8),
    ]  # fmt: skip
    frame = pl.DataFrame(
        [
            {
                "llm": llm,
                "dataset": ds,
                "slm": slm,
                "oracle_run_id": 1,
                "draft_k": k,
                "draft_stop": None,
                "draft_threshold": None,
                "cycles": 1,
                "tokens": 1,
                "acceptance": 0.5,
                "tokens_per_cycle": 1.0,
                "predicted_tokens_per_s": 1.0,
                "baseline_tokens_per_s": 1.0,
                "predicted_speedup": s,
            }
            for llm, ds, slm, k, s in rows
        ],
        schema=ADVICE_SCHEMA,
    )
    frame = frame.with_columns(
        pl.col("predicted_speedup").rank("ordinal", descending=True).over("llm", "dataset").alias("rank")
    )
    best = best_with_runner_up(frame).sort("llm")
    assert best["slm"].to_list() == ["a", "a"] and best["draft_k"].to_list() == [3, 1]
    assert best["runner_up_slm"].to_list() == ["b", "a"]  # another draft model first, else the next setting
    assert best["runner_up_predicted_speedup"].to_list() == [1.2, 0.8]


def test_advise_refuses_other_methods(tmp_path: Path) -> None:
    path = tmp_path / "w.duckdb"
    upgrade(path)
    with pytest.raises(AnalyticsError, match="oracle"):
        advise(path, "contrastive")
    assert main(["--warehouse", str(path)]) == 2  # no oracle run with costs: a clear error, exit 2


def test_advise_names_a_missing_file_and_an_unknown_experiment(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "w.duckdb"
    assert main(["--warehouse", str(path)]) == 2  # was a WarehouseError traceback
    assert f"no warehouse at {path}" in capsys.readouterr().err
    upgrade(path)
    assert main(["--warehouse", str(path), "--experiment", "x"]) == 2
    assert "no experiment 'x' in this warehouse; it has: none (no runs yet)" in capsys.readouterr().err


def test_verify_on_the_zoo_measures_the_predicted_cycles(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from collector.config import RunConfig
    from collector.engine import run_collection

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    path = tmp_path / "w.duckdb"
    upgrade(path)
    cfg = RunConfig(llm="zoo:zoo-s", slm="zoo:zoo-xs", dataset="builtin:arith", samples=3, max_new_tokens=24)
    run_collection(cfg, path, progress=False)
    torch.set_num_threads(before)
    assert main(["--warehouse", str(path), "--verify", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    (best,), (check,) = out["best"], out["verify"]
    assert best["llm"] == "zoo:zoo-s" and best["runner_up_slm"] == "zoo:zoo-xs"
    assert check["measured_cycles"] == check["predicted_cycles"]  # greedy: replay = the real run, exactly
    assert check["measured_acceptance"] == pytest.approx(check["predicted_acceptance"], abs=1e-12)
    assert check["measured_speedup"] > 0 and check["predicted_speedup"] > 0
    assert out["sampling"][0]["alpha"] > 0
    # The measured speed-up divides the run's decode by the LLM's generate on the same prompts, each batch
    # timed right after its decode (`baseline`); greedy, so both produced the same tokens.
    with duckdb.connect(str(path), read_only=True) as con:
        rows = con.execute(
            "SELECT kind, tokens, seconds FROM run_costs WHERE run_id = ? AND kind IN ('decode', 'baseline')",
            [check["run_id"]],
        ).fetchall()
        oracle_kinds = {k for (k,) in con.execute("SELECT kind FROM run_costs WHERE run_id = 1").fetchall()}
    got = {k: (n, s) for k, n, s in rows}
    assert got["baseline"][0] == got["decode"][0]
    tps = {k: n / s for k, (n, s) in got.items()}
    assert check["measured_speedup"] == pytest.approx(tps["decode"] / tps["baseline"])
    assert "baseline" not in oracle_kinds  # only speculative runs pair a baseline with their decode
