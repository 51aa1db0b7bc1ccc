"""Speculative statistics on hand-built cycles; without the speculative schema, empty frames."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import polars as pl
import pyarrow as pa
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

from analytics.costs import RunCosts, cycles_seconds
from analytics.source import AnalyticsError, query
from analytics.speculative import (
    acceptance_by_position,
    emitted_by_draft_index,
    expected_speedup,
    has_speculative_data,
    replay_from_oracle,
    speculative_runs,
    speculative_tables,
)
from tests.analytics.conftest import add_model, add_run, add_sample, add_speculative_schema
from warehouse.migrate import upgrade

# (drafted, accepted) per cycle, K = 3
CYCLES = [(3, 3), (3, 1), (3, 0), (3, 2), (2, 2)]


def test_expected_speedup_formula() -> None:
    assert expected_speedup(0.0, 4, 0.1) == pytest.approx(1 / 1.4)  # nothing accepted: one token per cycle
    assert expected_speedup(1.0, 4, 0.0) == pytest.approx(5.0)  # free drafts, all accepted: K + 1
    a, k, c = 0.8, 5, 0.05
    assert expected_speedup(a, k, c) == pytest.approx((1 - a ** (k + 1)) / ((1 - a) * (k * c + 1)))
    assert np.allclose(expected_speedup([0.5, 1 - 1e-12], [2, 2], [0.0, 0.0]), [1.75, 3.0])


@given(st.floats(0.0, 0.999), st.integers(1, 10), st.floats(0.0, 1.0))
def test_expected_speedup_bounds(a: float, k: int, c: float) -> None:
    s = float(expected_speedup(a, k, c))
    assert 1 / (k * c + 1) - 1e-12 <= s <= (k + 1) / (k * c + 1) + 1e-12


def test_degrades_to_empty_without_speculative_schema(tmp_path: Path) -> None:
    path = tmp_path / "old.duckdb"
    upgrade(path, "0001")  # the schema before the speculative migration
    with duckdb.connect(str(path), read_only=True) as con:
        assert not has_speculative_data(con)
        assert acceptance_by_position(con).height == 0
        assert speculative_runs(con).height == 0 and "flop_model_speedup" in speculative_runs(con).columns
        assert emitted_by_draft_index(con).height == 0


@pytest.fixture
def spec_run(con: duckdb.DuckDBPyConnection) -> int:
    add_speculative_schema(con)
    add_model(con, "L", 1000)
    add_model(con, "S", 100)
    oracle = add_run(con, method="oracle", tokens_per_s=10.0)
    assert oracle > 0
    run = add_run(con, method="speculative", settings={"draft_k": 3}, tokens_per_s=16.0)
    for i, (drafted, accepted) in enumerate(CYCLES):
        con.execute("INSERT INTO spec_cycles VALUES (?, 0, ?, ?, ?)", [run, i, drafted, accepted])
    return run


def test_acceptance_by_position_by_hand(con: duckdb.DuckDBPyConnection, spec_run: int) -> None:
    got = acceptance_by_position(con)
    # position 0 reached by all 5 cycles, accepted in 4; position 1 reached by 4, accepted in 3;
    # position 2 reached by the 2 cycles that drafted 3 and accepted >= 2, accepted in 1
    assert got["position"].to_list() == [0, 1, 2]
    assert got["reached"].to_list() == [5, 4, 2]
    assert got["accepted"].to_list() == [4, 3, 1]
    assert got["acceptance_rate"].to_list() == pytest.approx([0.8, 0.75, 0.5])
    assert got["survival"].to_list() == pytest.approx([0.8, 0.6, 0.2])


def test_speculative_runs_by_hand(con: duckdb.DuckDBPyConnection, spec_run: int) -> None:
    row = speculative_runs(con).row(0, named=True)
    accepted, trials = 8, 8 + 3  # three cycles stopped at a rejection
    a = accepted / trials
    assert row["run_id"] == spec_run and row["draft_k"] == 3 and row["cycles"] == 5
    assert row["acceptance"] == pytest.approx(a) and row["mean_accepted"] == pytest.approx(1.6)
    assert row["tokens_per_cycle"] == pytest.approx(2.6) and row["cost_ratio"] == pytest.approx(0.1)
    assert row["flop_model_speedup"] == pytest.approx((1 - a**4) / ((1 - a) * 1.3))
    # no costs and no paired baseline recorded: no speed-up is borrowed from the oracle run of the same LLM
    assert row["predicted_speedup"] is None and row["measured_speedup"] is None
    assert row["measured_note"].startswith("no measured speed-up") and "no predicted" in row["predicted_from"]


def test_both_tables_from_one_scan_by_hand(con: duckdb.DuckDBPyConnection, spec_run: int) -> None:
    # a second run of another dataset, whose last cycle was cut to 0 of 0: no position, one cycle
    other = add_run(con, method="speculative", dataset="arith", settings={"draft_k": 2})
    for i, (drafted, accepted) in enumerate([(2, 2), (2, 0), (0, 0)]):
        con.execute("INSERT INTO spec_cycles VALUES (?, 0, ?, ?, ?)", [other, i, drafted, accepted])
    runs, acceptance = speculative_tables(con, ["dataset"])
    assert runs["run_id"].to_list() == [spec_run, other] and runs["cycles"].to_list() == [5, 3]
    assert runs["drafted"].to_list() == [14, 4] and runs["accepted"].to_list() == [8, 2]
    arith = acceptance.filter(pl.col("dataset") == "arith")
    # position 0: reached by the 2 cycles that drafted, accepted in 1; position 1: reached by 1, accepted
    assert arith["position"].to_list() == [0, 1] and arith["reached"].to_list() == [2, 1]
    assert arith["accepted"].to_list() == [1, 1] and arith["cycles"].to_list() == [3, 3]
    assert acceptance["dataset"].to_list() == ["arith"] * 2 + ["gsm8k"] * 3
    assert_frame_equal(runs, speculative_runs(con))


def test_tables_equal_a_count_over_each_cycle(con: duckdb.DuckDBPyConnection) -> None:
    """Random cycles of five runs in groups with a null key: each position's counts and rates, the groups'
    order (nulls last), each run's sums, acceptance and K (a string K too) equal a count cycle by cycle."""
    add_model(con, "L", 1000)
    add_model(con, "S", 100)
    rng = np.random.default_rng(7)
    cycles: dict[int, list[tuple[int, int]]] = {}
    keys: dict[int, tuple[str | None, str]] = {}
    ks: dict[int, int] = {}
    for tuned, dataset, k in ((None, "a", 3), ("T", "a", 2), (None, "b", 4), ("T", "b", 3), (None, "a", "5")):
        run = add_run(con, method="speculative", slm_tuned=tuned, dataset=dataset, settings={"draft_k": k})
        drafted = rng.integers(0, int(k) + 1, 60).tolist()
        cycles[run] = [(d, int(rng.integers(0, d + 1))) for d in drafted]
        keys[run], ks[run] = (tuned, dataset), int(k)
        rows = [[run, c, d, a] for c, (d, a) in enumerate(cycles[run])]
        con.executemany("INSERT INTO spec_cycles VALUES (?, 0, ?, ?, ?)", rows)
    want = []
    for key in sorted(set(keys.values()), key=lambda g: tuple((v is None, v) for v in g)):
        mine = [c for run, cs in cycles.items() if keys[run] == key for c in cs]
        for i in range(max(d for d, _ in mine)):
            reached = sum(d > i and a >= i for d, a in mine)
            kept = sum(d > i and a > i for d, a in mine)
            rate = kept / reached if reached else None
            want.append((*key, i, reached, kept, len(mine), rate, kept / len(mine)))
    assert acceptance_by_position(con, ["slm_tuned", "dataset"]).rows() == want
    runs = speculative_runs(con)
    assert runs["run_id"].to_list() == sorted(cycles)
    for row in runs.iter_rows(named=True):
        cs = cycles[row["run_id"]]
        accepted, trials = sum(a for _, a in cs), sum(a + (a < d) for d, a in cs)
        assert (row["cycles"], row["drafted"]) == (len(cs), sum(d for d, _ in cs))
        assert row["accepted"] == accepted and row["acceptance"] == accepted / trials
        assert row["draft_k"] == ks[row["run_id"]] and row["mean_accepted"] == accepted / len(cs)


def _costs(con: duckdb.DuckDBPyConnection, run: int, cycle_s: float, generate_s: float) -> None:
    rows = [(run, "cycle", 1, 0.01), (run, "cycle", 2, cycle_s), (run, "prefill", 0, 0.1)]
    rows.append((run, "llm_generate", 100, generate_s))
    con.executemany(
        "INSERT INTO run_costs (run_id, kind, tokens, batch_size, seconds) VALUES (?, ?, ?, 1, ?)", rows
    )


def test_speed_ups_pick_the_pairs_costs_and_sum_every_paired_batch(con: duckdb.DuckDBPyConnection) -> None:
    """Predicted with the pair's greedy oracle run's costs, else (its generate untimed) the run's own;
    measured over the decode and baseline of all its batches."""
    add_model(con, "L", 1000)
    add_model(con, "S", 100)
    oracle = add_run(con, method="oracle")
    run = add_run(con, method="speculative", settings={"draft_k": 2})
    for sample, n in ((0, 5), (1, 7)):
        add_sample(con, run, sample, n_tokens=n)
    for c, a in enumerate([2, 0, 1, 2]):
        con.execute("INSERT INTO spec_cycles VALUES (?, 0, ?, 2, ?)", [run, c, a])
    _costs(con, oracle, 0.02, 1.0)
    _costs(con, run, 0.03, 2.0)
    paired = [("decode", 10, 0.5), ("decode", 20, 0.5), ("baseline", 30, 2.0)]
    con.executemany(
        "INSERT INTO run_costs (run_id, kind, tokens, batch_size, seconds) VALUES (?, ?, ?, 4, ?)",
        [(run, *p) for p in paired],
    )
    (row,) = speculative_runs(con).iter_rows(named=True)
    # 12 tokens in two prefills and four cycles of K = 2, over the generate's 100 tokens per second
    assert row["predicted_speedup"] == pytest.approx(12 / (2 * 0.1 + 4 * 0.02) / 100, rel=1e-12)
    assert row["predicted_from"].endswith(f"the costs run {oracle} of the pair measured")
    assert row["measured_speedup"] == pytest.approx((30 / 1.0) / (30 / 2.0), rel=1e-12)
    con.execute("DELETE FROM run_costs WHERE run_id = ? AND kind = 'llm_generate'", [oracle])
    (row,) = speculative_runs(con).iter_rows(named=True)
    assert row["predicted_speedup"] == pytest.approx(12 / (2 * 0.1 + 4 * 0.03) / 50, rel=1e-12)
    assert row["predicted_from"].endswith("its own costs")


def test_cycles_seconds_from_counts_is_the_sum_over_cycles() -> None:
    costs = RunCosts({1: 0.01, 2: 0.015, 4: 0.03}, 0.2, 100.0, stop_cycle_s={1: 0.012, 3: 0.025, 4: 0.031})
    drafted = np.random.default_rng(3).integers(0, 5, 500)
    values, counts = np.unique(drafted, return_counts=True)
    for k, stop in ((4, None), (4, "max_prob"), (3, "entropy")):
        clipped = [min(max(d, 1), k) for d in drafted.tolist()]
        each = [costs.cycle(k) if stop is None else costs.stop_cycle(d, k) for d in clipped]
        from_counts = cycles_seconds(values, k, stop, costs, 7, counts)
        assert from_counts == pytest.approx(7 * 0.2 + sum(each), rel=1e-12)
        assert cycles_seconds(drafted[::-1], k, stop, costs, 7) == from_counts  # any order: the same float


def test_emitted_tokens_by_draft_index(con: duckdb.DuckDBPyConnection, spec_run: int) -> None:
    con.execute(
        "INSERT INTO token_events BY NAME SELECT ? AS run_id, 0 AS sample_id, i AS step, 0 AS rel_pos, "
        "1 AS token_id, 1 AS s1_token_id, 0.9 AS s1_prob, 0.1 AS s1_entropy, 0.5 AS s1_margin, "
        "1 AS s2_token_id, 1 AS llm_token_id, 0.9 AS llm_prob, 0.1 AS llm_entropy, "
        "0.9 AS llm_prob_s1_token, true AS consulted, i = 3 AS mismatch, "
        "CASE WHEN i < 3 THEN i ELSE 3 END AS draft_index, i < 3 AS accepted FROM range(4) t(i)",
        [spec_run],
    )
    got = emitted_by_draft_index(con, filters={"method": "speculative"})
    assert got.to_dicts() == [
        {"draft_index": 0, "accepted": True, "tokens": 1},
        {"draft_index": 1, "accepted": True, "tokens": 1},
        {"draft_index": 2, "accepted": True, "tokens": 1},
        {"draft_index": 3, "accepted": False, "tokens": 1},
    ]
    assert acceptance_by_position(con, ["method"]).height == 3
    assert isinstance(acceptance_by_position(con, ["method"])["method"].dtype, pl.String)


# Replay against real runs: a greedy oracle run of a zoo pair, then real speculative runs on the same prompts.
ZOO_PAIR = ("zoo:zoo-s", "zoo:zoo-xs")
STOPS = {None: None, "max_prob": 0.6, "entropy": 1.0}


@dataclass(frozen=True)
class ReplayCase:
    """A warehouse with one greedy oracle run and one real speculative run, and the collector's own cycles
    (as it stages them) for any other settings, on the same prompts."""

    path: Path
    oracle: int
    speculative: int  # K = 3, max_prob stop, batch 8, through the warehouse
    base: Any

    def real_cycles(self, k: int, stop: str | None, batch: int) -> tuple[pl.DataFrame, int]:
        """(cycles, generated tokens) of a real speculative collection with these settings."""
        from collector.decode.speculative import collect_speculative_batch, cycles_for_samples
        from collector.engine import build_context, load_task_for
        from tests.collector.helpers import run_batches

        cfg = replace(
            self.base, method="speculative", draft_k=k, draft_stop=stop, draft_threshold=STOPS[stop],
            batch_size=batch,
        )  # fmt: skip
        task = load_task_for(cfg)
        ctx = build_context(cfg, task)
        parts, tokens = [], 0
        for chunk, out in run_batches(
            ctx, collect_speculative_batch, [it.prompt for it in task.items], batch
        ):
            assert out.cycles is not None
            parts.append(cycles_for_samples(out.cycles, chunk, out.valid.tolist()))
            tokens += int(out.valid.sum())
        frame = pl.from_arrow(pa.concat_tables(parts))
        assert isinstance(frame, pl.DataFrame)
        return frame.sort("sample_id", "cycle"), tokens


@pytest.fixture(scope="module")
def replay_case(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ReplayCase]:
    from collector.config import RunConfig
    from collector.engine import run_collection

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    path = tmp_path_factory.mktemp("replay") / "fsgen.duckdb"
    upgrade(path)
    base = RunConfig(
        llm=ZOO_PAIR[0], slm=ZOO_PAIR[1], dataset="builtin:arith", samples=8, max_new_tokens=40,
        batch_size=8, calibrate=False,
    )  # fmt: skip
    oracle = run_collection(base, path, progress=False).run_id
    spec = replace(
        base, method="speculative", draft_k=3, draft_stop="max_prob", draft_threshold=STOPS["max_prob"]
    )
    speculative = run_collection(spec, path, progress=False).run_id
    assert oracle is not None and speculative is not None
    yield ReplayCase(path, oracle, speculative, base)
    torch.set_num_threads(before)


def _check_replay(replay: pl.DataFrame, real: pl.DataFrame, tokens: int, k: int, stop: str | None) -> None:
    keys = ["sample_id", "cycle", "accepted"]
    assert_frame_equal(replay.select(keys), real.select(keys), check_dtypes=False)  # every cycle, exactly
    exact = replay["drafted_exact"].to_numpy()
    np.testing.assert_array_equal(replay["drafted"].to_numpy()[exact], real["drafted"].to_numpy()[exact])
    if stop is None:
        assert exact.all()
    elif k > 1:
        assert (real["drafted"] < k).any()  # the stop rule acted
    assert int(real["accepted"].sum()) + real.height == tokens  # sum(accepted) + cycles = n_tokens


@pytest.mark.parametrize("k", [1, 3, 5])
@pytest.mark.parametrize("stop", list(STOPS))
@pytest.mark.parametrize("batch", [1, 8])
def test_replay_equals_real_runs_cycle_for_cycle(
    replay_case: ReplayCase, k: int, stop: str | None, batch: int
) -> None:
    replay = replay_from_oracle(replay_case.path, replay_case.oracle, k, stop, STOPS[stop])
    real, tokens = replay_case.real_cycles(k, stop, batch)
    _check_replay(replay, real, tokens, k, stop)


def test_replay_equals_a_real_run_in_the_warehouse(replay_case: ReplayCase) -> None:
    with duckdb.connect(str(replay_case.path), read_only=True) as con:
        run = [replay_case.speculative]
        real = query(
            con,
            "SELECT sample_id, cycle, drafted, accepted FROM spec_cycles WHERE run_id = ? ORDER BY 1, 2",
            run,
        )
        tokens = con.execute("SELECT sum(n_tokens) FROM samples WHERE run_id = ?", run).fetchone()
    assert tokens is not None
    replay = replay_from_oracle(replay_case.path, replay_case.oracle, 3, "max_prob", STOPS["max_prob"])
    _check_replay(replay, real, int(tokens[0]), 3, "max_prob")


def test_replay_refuses_what_it_cannot_replay(replay_case: ReplayCase) -> None:
    path, oracle = replay_case.path, replay_case.oracle
    with pytest.raises(AnalyticsError, match="greedy oracle run"):
        replay_from_oracle(path, replay_case.speculative, 3)
    with pytest.raises(AnalyticsError, match="no run 999"):
        replay_from_oracle(path, 999, 3)
    with pytest.raises(AnalyticsError, match="together"):
        replay_from_oracle(path, oracle, 3, "max_prob")
