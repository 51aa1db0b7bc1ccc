"""Contrastive decoding: System 2 mixes both models' scores on the LLM's plausible set.

score_v = (1 − λ)·s_v + λ·l_v for v with l_v ≥ log α + max l, −inf elsewhere; System 2's token is its argmax
(or a sample from softmax(score / T) when sampling). λ = 1 is the oracle; λ > 1 is the classic "expert minus
amateur" form.
"""

from __future__ import annotations

import math

import torch

from collector.config import RunConfig
from collector.methods.base import CollectContext, LockstepRule, MethodSpec, StepChoice
from collector.sampling import pick_no_sync


def contrastive_scores(s_logp: torch.Tensor, l_logp: torch.Tensor, alpha: float, lam: float) -> torch.Tensor:
    """System 2's scores [..., V]: the (1 − λ, λ) mix on the α-plausible set, −inf outside it."""
    floor = torch.finfo(l_logp.dtype).min  # keeps 0·(−inf) out of the mix
    small, large = s_logp.clamp_min(floor), l_logp.clamp_min(floor)
    cut = large.amax(-1, keepdim=True) + (math.log(alpha) if alpha > 0 else -math.inf)  # [..., 1]
    mix = (1.0 - lam) * small + lam * large
    return mix.masked_fill(large < cut, float("-inf"))


def contrastive_step(
    s_logp: torch.Tensor, l_logp: torch.Tensor, cfg: RunConfig, noise: torch.Tensor | None = None
) -> StepChoice:
    """System 2's token for each row: [B] from log-probs [B, V] (α = cfg.alpha, λ = cfg.lam)."""
    scores = contrastive_scores(s_logp, l_logp, cfg.alpha, cfg.lam)
    return StepChoice(s2_token=pick_no_sync(scores, cfg, noise))


def _rule(ctx: CollectContext) -> LockstepRule:
    cfg = ctx.config
    return LockstepRule((ctx.slm, ctx.llm), lambda lp, g: contrastive_step(lp[0], lp[1], cfg, g))


def _check(cfg: RunConfig) -> str | None:
    if not 0.0 <= cfg.alpha <= 1.0:
        return f"--alpha {cfg.alpha} is outside [0, 1] (the paper uses 0.1)"
    return None


SPEC = MethodSpec("contrastive", "lockstep", rule=_rule, check=_check)
