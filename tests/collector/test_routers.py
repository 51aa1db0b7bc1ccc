"""Routers: threshold rules on hand-made figures, `never` and `always` end to end, and the learned router
trained by `python -m collector.router train` on a tiny run and applied on the device."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pytest
import torch

from collector.config import RunConfig
from collector.decode.lockstep import collect_lockstep_batch
from collector.decode.oracle import collect_oracle_batch
from collector.engine import run_collection
from collector.router import main as router_main
from collector.routers import build_router
from collector.routers.learned import LearnedModel, features_from_events
from collector.routers.threshold import AlwaysRouter, NeverRouter, ThresholdRouter
from collector.token_stats import Figures
from tests.collector.helpers import (
    PROMPTS,
    assert_events_equal,
    collect_events,
    context,
    llm_greedy,
    loaded,
    one_thread,  # noqa: F401  (fixture)
    perturbed_copy,
    tokens_by_sample,
)
from tests.conftest import TinyModels
from warehouse import vocabulary

MAX_NEW = 12
pytestmark = pytest.mark.usefixtures("one_thread")
FIGS = Figures(
    token=torch.tensor([1, 2, 3, 4]),
    prob=torch.tensor([0.9, 0.5, 0.3, 0.6]),
    entropy=torch.tensor([0.2, 1.0, 2.5, 0.9]),
    margin=torch.tensor([0.85, 0.1, 0.05, 0.4]),
)
STEP = torch.tensor([0, 1, 2, 3])


def test_threshold_routers_on_hand_made_figures() -> None:
    assert AlwaysRouter().consult_no_sync(FIGS, STEP).tolist() == [True] * 4
    assert NeverRouter().consult_no_sync(FIGS, STEP).tolist() == [False] * 4
    rules, taus = vocabulary.THRESHOLD_RULES, {"max_prob": 0.55, "margin": 0.2, "entropy": 0.95}
    for name, tau in taus.items():
        consult = ThresholdRouter(rules[name], tau).consult_no_sync(FIGS, STEP)
        assert consult.tolist() == [False, True, True, False], name


def test_build_router_reads_the_config() -> None:
    base = RunConfig(llm="l", slm="s", prompts="p")
    assert isinstance(build_router(base), AlwaysRouter)
    assert isinstance(build_router(replace(base, router="never")), NeverRouter)
    margin = vocabulary.THRESHOLD_RULES["margin"]
    assert build_router(replace(base, router="margin", threshold=0.1)) == ThresholdRouter(margin, 0.1)
    with pytest.raises(ValueError, match="--threshold"):
        build_router(replace(base, router="entropy"))
    with pytest.raises(ValueError, match="--router-model"):
        build_router(replace(base, router="learned"))


def _config(models: TinyModels, **kw: Any) -> RunConfig:
    base = RunConfig(llm=str(models.llm), slm=str(models.slm), prompts="unused", max_new_tokens=MAX_NEW)
    return replace(base, **kw)


def test_never_is_system1_alone(tiny_models: TinyModels) -> None:
    events = collect_events(context(_config(tiny_models, router="never")), collect_lockstep_batch, PROMPTS, 8)
    assert not any(events.column("mismatch").to_pylist()) and not any(events.column("consulted").to_pylist())
    slm = loaded(tiny_models.slm)
    for sid, tokens in tokens_by_sample(events).items():
        assert tokens == llm_greedy(slm, PROMPTS[sid], MAX_NEW)
    assert min(events.column("llm_prob").to_pylist()) > 0  # the LLM's figures are there all the same


def test_always_in_lock_step_is_the_oracle_run(tiny_models: TinyModels) -> None:
    ctx = context(_config(tiny_models))
    lock = collect_events(ctx, collect_lockstep_batch, PROMPTS, 8)
    assert_events_equal(lock, collect_events(ctx, collect_oracle_batch, PROMPTS, 8))
    assert all(lock.column("consulted").to_pylist())


@pytest.mark.parametrize(
    ("router", "threshold", "column", "rule"),
    [("max_prob", 0.00427, "s1_prob", np.less), ("margin", 1.2e-4, "s1_margin", np.less)],
)
def test_threshold_routers_end_to_end(
    tiny_models: TinyModels, router: str, threshold: float, column: str, rule: Any
) -> None:
    ctx = context(_config(tiny_models, router=router, threshold=threshold))
    events = collect_events(ctx, collect_lockstep_batch, PROMPTS, 8)
    consulted = np.asarray(events.column("consulted"))
    np.testing.assert_array_equal(consulted, rule(np.asarray(events.column(column)), threshold))
    assert 0 < consulted.sum() < len(consulted)
    token, s1, s2 = (np.asarray(events.column(c)) for c in ("token_id", "s1_token_id", "s2_token_id"))
    np.testing.assert_array_equal(token, np.where(consulted, s2, s1))


@pytest.fixture(scope="module")
def near_slm(tiny_models: TinyModels, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An SLM that agrees with the LLM on some tokens only (so mismatches are learnable)."""
    return perturbed_copy(tiny_models.llm, tmp_path_factory.mktemp("near") / "m", scale=0.15, seed=9)


def _events(warehouse: Path, run_id: int) -> dict[str, np.ndarray]:
    with duckdb.connect(str(warehouse), read_only=True) as con:
        table = con.sql(
            "SELECT * FROM token_events WHERE run_id = ? ORDER BY sample_id, step", params=[run_id]
        ).to_arrow_table()
    return {c: table.column(c).to_numpy() for c in table.column_names}


def test_learned_router_trains_on_a_run_and_applies_on_the_device(
    tiny_models: TinyModels, near_slm: Path, warehouse_path: Path, prompts_file: Path, tmp_path: Path
) -> None:
    # The near SLM is a perturbed copy of the LLM: the same size, so the pair is inverted on purpose.
    cfg = _config(
        tiny_models, slm=str(near_slm), prompts=str(prompts_file), max_new_tokens=24, allow_inverted=True
    )
    trained_on = run_collection(cfg, warehouse_path, progress=False)
    assert trained_on.run_id is not None and 0 < trained_on.mismatches < trained_on.tokens
    model_path = tmp_path / "router.json"
    argv = [
        "train",
        "--run",
        str(trained_on.run_id),
        "--out",
        str(model_path),
        "--warehouse",
        str(warehouse_path),
    ]
    assert router_main(argv) == 0
    model = LearnedModel.load(model_path)
    assert json.loads(model_path.read_text())["info"]["run_id"] == trained_on.run_id

    routed = run_collection(
        replace(cfg, router="learned", router_model=str(model_path)), warehouse_path, progress=False
    )
    assert routed.run_id is not None
    events = _events(warehouse_path, routed.run_id)
    logit = model.predict_logit(features_from_events(events))
    sure = np.abs(logit) > 1e-4  # away from the boundary, fp32 on the device and fp64 here agree
    np.testing.assert_array_equal(events["consulted"][sure], (logit > 0)[sure])
    assert 0 < events["consulted"].sum() < len(logit)


def test_train_refuses_runs_it_cannot_learn_from(
    tiny_models: TinyModels, warehouse_path: Path, prompts_file: Path, tmp_path: Path, capsys: Any
) -> None:
    same = _config(tiny_models, slm=str(tiny_models.llm), prompts=str(prompts_file))
    run = run_collection(same, warehouse_path, progress=False)  # identical models: no mismatch to learn
    out = str(tmp_path / "r.json")
    assert (
        router_main(["train", "--run", str(run.run_id), "--out", out, "--warehouse", str(warehouse_path)])
        == 2
    )
    assert "one class" in capsys.readouterr().err
    assert router_main(["train", "--run", "999", "--out", out, "--warehouse", str(warehouse_path)]) == 2
    assert "not in" in capsys.readouterr().err


def test_speculative_refuses_a_router_before_anything_is_staged(
    tiny_models: TinyModels, warehouse_path: Path, prompts_file: Path
) -> None:
    cfg = _config(
        tiny_models, method="speculative", router="entropy", threshold=1.0, prompts=str(prompts_file)
    )
    with pytest.raises(ValueError, match="--router always"):
        run_collection(cfg, warehouse_path, progress=False)
    assert not any((warehouse_path.parent / f"{warehouse_path.name}.staging").glob("*/run.json"))
