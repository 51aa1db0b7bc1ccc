"""Proxy tuning: the step function's properties (hypothesis) and end-to-end runs with a tuned tiny SLM."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from collector.config import RunConfig
from collector.decode import batch_collector
from collector.decode.lockstep import collect_lockstep_batch
from collector.methods.oracle import oracle_step
from collector.methods.proxy import proxy_step
from tests.collector.helpers import (
    PROMPTS,
    at_step,
    collect_events,
    context,
    llm_greedy,
    loaded,
    next_token_logp,
    one_thread,  # noqa: F401  (fixture)
    perturbed_copy,
    tokens_by_sample,
)
from tests.conftest import TinyModels

MAX_NEW = 12
CFG = RunConfig(llm="l", slm="s", prompts="p", method="proxy", slm_tuned="t")
pytestmark = pytest.mark.usefixtures("one_thread")


def _logp(seed: int, rows: int, vocab: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.log_softmax(torch.randn(rows, vocab, generator=gen) * 3.0, dim=-1)


shapes = st.tuples(st.integers(1, 6), st.integers(2, 50))
seeds = st.integers(0, 2**31)


@settings(max_examples=60, deadline=None)
@given(shape=shapes, a=seeds, b=seeds, c=seeds)
def test_weight_zero_is_the_oracle(shape: tuple[int, int], a: int, b: int, c: int) -> None:
    s, tuned, large = _logp(a, *shape), _logp(b, *shape), _logp(c, *shape)
    choice = proxy_step(s, tuned, large, replace(CFG, weight=0.0)).s2_token
    assert torch.equal(choice, oracle_step(s, large).s2_token)


@settings(max_examples=60, deadline=None)
@given(shape=shapes, a=seeds, c=seeds, w=st.floats(-3.0, 3.0))
def test_an_untuned_shift_is_the_oracle(shape: tuple[int, int], a: int, c: int, w: float) -> None:
    """s′ = s: the shift is zero for any weight."""
    s, large = _logp(a, *shape), _logp(c, *shape)
    assert torch.equal(proxy_step(s, s.clone(), large, replace(CFG, weight=w)).s2_token, large.argmax(-1))


@settings(max_examples=60, deadline=None)
@given(shape=shapes, a=seeds, w=st.floats(-3.0, 3.0))
def test_identical_models_never_disagree(shape: tuple[int, int], a: int, w: float) -> None:
    s = _logp(a, *shape)
    assert torch.equal(proxy_step(s, s.clone(), s.clone(), replace(CFG, weight=w)).s2_token, s.argmax(-1))


@pytest.fixture(scope="module")
def tuned(tiny_models: TinyModels, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A stand-in for a tuned SLM: the SLM with its weights nudged."""
    return perturbed_copy(tiny_models.slm, tmp_path_factory.mktemp("tuned") / "m", scale=0.3, seed=4)


def _config(models: TinyModels, tuned: Path, **kw: Any) -> RunConfig:
    base = RunConfig(llm=str(models.llm), slm=str(models.slm), prompts="unused", max_new_tokens=MAX_NEW)
    return replace(base, method="proxy", slm_tuned=str(tuned), **kw)


def test_weight_zero_run_equals_the_llm_greedy_output(tiny_models: TinyModels, tuned: Path) -> None:
    cfg = _config(tiny_models, tuned, weight=0.0)
    events = collect_events(context(cfg), batch_collector(cfg), PROMPTS, 8)
    llm = loaded(tiny_models.llm)
    for sid, tokens in tokens_by_sample(events).items():
        assert tokens == llm_greedy(llm, PROMPTS[sid], MAX_NEW)


def test_system1_is_the_tuned_slm(tiny_models: TinyModels, tuned: Path) -> None:
    """With router `never` the text is the tuned SLM's own greedy output."""
    cfg = _config(tiny_models, tuned, router="never")
    events = collect_events(context(cfg), collect_lockstep_batch, PROMPTS, 8)
    tuned_model = loaded(tuned)
    for sid, tokens in tokens_by_sample(events).items():
        assert tokens == llm_greedy(tuned_model, PROMPTS[sid], MAX_NEW)
    assert not any(events.column("mismatch").to_pylist())


def test_first_token_follows_the_formula(tiny_models: TinyModels, tuned: Path) -> None:
    ctx = context(_config(tiny_models, tuned, weight=1.5))
    first = at_step(collect_events(ctx, collect_lockstep_batch, PROMPTS, 8), "s2_token_id")
    for sid, prompt in enumerate(PROMPTS):
        s, t, large = (next_token_logp(m, prompt, ctx.vocab) for m in (ctx.slm, loaded(tuned), ctx.llm))
        assert first[sid] == int((large + 1.5 * (t - s)).argmax())
