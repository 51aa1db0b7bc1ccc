"""Contrastive decoding: the step function's properties (hypothesis) and end-to-end runs on tiny models."""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from collector.config import RunConfig
from collector.decode.lockstep import collect_lockstep_batch
from collector.decode.oracle import collect_oracle_batch
from collector.methods.contrastive import contrastive_scores, contrastive_step
from collector.methods.oracle import oracle_step
from collector.sampling import gumbel_no_sync
from tests.collector.helpers import (
    PROMPTS,
    at_step,
    collect_events,
    context,
    next_token_logp,
    one_thread,  # noqa: F401  (fixture)
    tokens_by_sample,
)
from tests.conftest import TinyModels

MAX_NEW = 12
CFG = RunConfig(llm="l", slm="s", prompts="p", method="contrastive")
pytestmark = pytest.mark.usefixtures("one_thread")


def _logp(seed: int, rows: int, vocab: int, spread: float) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.log_softmax(torch.randn(rows, vocab, generator=gen) * spread, dim=-1)


logps = st.builds(
    _logp,
    seed=st.integers(0, 2**31),
    rows=st.integers(1, 6),
    vocab=st.integers(2, 50),
    spread=st.floats(0.1, 10.0),
)
alphas = st.floats(1e-4, 1.0)


@settings(max_examples=60, deadline=None)
@given(l_logp=logps, seed=st.integers(0, 2**31), alpha=alphas)
def test_lambda_one_is_the_oracle(l_logp: torch.Tensor, seed: int, alpha: float) -> None:
    s_logp = _logp(seed, *l_logp.shape, spread=3.0)
    cfg = replace(CFG, lam=1.0, alpha=alpha)
    assert torch.equal(contrastive_step(s_logp, l_logp, cfg).s2_token, oracle_step(s_logp, l_logp).s2_token)


@settings(max_examples=60, deadline=None)
@given(logp=logps, alpha=alphas, lam=st.floats(0.0, 3.0))
def test_identical_models_never_disagree(logp: torch.Tensor, alpha: float, lam: float) -> None:
    """CoF of a model with itself is 0: System 2's choice is System 1's argmax for every α and λ."""
    cfg = replace(CFG, lam=lam, alpha=alpha)
    assert torch.equal(contrastive_step(logp, logp.clone(), cfg).s2_token, logp.argmax(-1))


@settings(max_examples=60, deadline=None)
@given(l_logp=logps, seed=st.integers(0, 2**31), alpha=alphas, lam=st.floats(-1.0, 3.0))
def test_choice_is_plausible_and_maximises_the_mix(
    l_logp: torch.Tensor, seed: int, alpha: float, lam: float
) -> None:
    s_logp = _logp(seed, *l_logp.shape, spread=3.0)
    choice = contrastive_step(s_logp, l_logp, replace(CFG, lam=lam, alpha=alpha)).s2_token
    picked_l = l_logp.gather(-1, choice[:, None]).squeeze(-1)
    assert (picked_l >= l_logp.max(-1).values + math.log(alpha) - 1e-6).all()
    mix = (1 - lam) * s_logp + lam * l_logp
    plausible = l_logp >= l_logp.max(-1, keepdim=True).values + math.log(alpha)
    best = mix.masked_fill(~plausible, -math.inf).max(-1).values
    assert torch.allclose(mix.gather(-1, choice[:, None]).squeeze(-1), best)


@settings(max_examples=40, deadline=None)
@given(l_logp=logps, seed=st.integers(0, 2**31), alpha=alphas, t=st.floats(0.05, 2.0), p=st.floats(0.05, 1.0))
def test_samples_stay_in_the_plausible_set(
    l_logp: torch.Tensor, seed: int, alpha: float, t: float, p: float
) -> None:
    s_logp = _logp(seed, *l_logp.shape, spread=3.0)
    cfg = replace(CFG, alpha=alpha, temperature=t, top_p=p)
    gen = torch.Generator().manual_seed(seed)
    noise = gumbel_no_sync(l_logp.shape, gen, l_logp.device)
    choice = contrastive_step(s_logp, l_logp, cfg, noise).s2_token
    scores = contrastive_scores(s_logp, l_logp, alpha, cfg.lam)
    assert torch.isfinite(scores.gather(-1, choice[:, None])).all()


def _config(models: TinyModels, **kw: Any) -> RunConfig:
    base = RunConfig(llm=str(models.llm), slm=str(models.slm), prompts="unused", max_new_tokens=MAX_NEW)
    return replace(base, method="contrastive", **kw)


def test_lambda_one_run_equals_the_oracle_run(tiny_models: TinyModels) -> None:
    ctx = context(_config(tiny_models, lam=1.0))
    contrastive = collect_events(ctx, collect_lockstep_batch, PROMPTS, 8)
    oracle = collect_events(context(replace(ctx.config, method="oracle")), collect_oracle_batch, PROMPTS, 8)
    assert tokens_by_sample(contrastive) == tokens_by_sample(oracle)
    np.testing.assert_array_equal(
        np.asarray(contrastive.column("mismatch")), np.asarray(oracle.column("mismatch"))
    )


def test_run_with_identical_models_has_cof_zero(tiny_models: TinyModels) -> None:
    ctx = context(_config(tiny_models, slm=str(tiny_models.llm)))
    events = collect_events(ctx, collect_lockstep_batch, PROMPTS, 8)
    assert len(events) > 0 and not any(events.column("mismatch").to_pylist())


def test_first_token_follows_the_formula(tiny_models: TinyModels) -> None:
    """System 2's first choice recomputed by hand from both models' logits at the end of the prompt."""
    ctx = context(_config(tiny_models, alpha=0.5, lam=0.7))
    events = collect_events(ctx, collect_lockstep_batch, PROMPTS, 8)
    first = at_step(events, "s2_token_id")
    for sid, prompt in enumerate(PROMPTS):
        small, large = (next_token_logp(m, prompt, ctx.vocab) for m in (ctx.slm, ctx.llm))
        mix = 0.3 * small + 0.7 * large
        mix[large < large.max() + math.log(0.5)] = -math.inf
        assert first[sid] == int(mix.argmax())
