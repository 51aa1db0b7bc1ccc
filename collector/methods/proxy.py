"""Proxy tuning (emulated fine-tuning): the tuned SLM's shift is added to the LLM's scores.

score = l + w·(s′ − s), with s′ the tuned SLM and s its base; System 1 is the tuned SLM.
w = 0 is the LLM alone.
"""

from __future__ import annotations

import torch

from collector.config import RunConfig
from collector.methods.base import CollectContext, LockstepRule, MethodSpec, StepChoice
from collector.modeling import LoadedModel
from collector.sampling import pick_no_sync


def proxy_scores(
    s_logp: torch.Tensor, s_tuned_logp: torch.Tensor, l_logp: torch.Tensor, weight: float
) -> torch.Tensor:
    """System 2's scores [..., V]: l + w·(s′ − s)."""
    if weight == 0.0:
        return l_logp  # exactly the LLM, even where s′ − s is not finite
    return l_logp + weight * (s_tuned_logp - s_logp)


def proxy_step(
    s_logp: torch.Tensor,
    s_tuned_logp: torch.Tensor,
    l_logp: torch.Tensor,
    cfg: RunConfig,
    noise: torch.Tensor | None = None,
) -> StepChoice:
    """System 2's token for each row: [B] from the base, tuned and large models' log-probs [B, V]."""
    scores = proxy_scores(s_logp, s_tuned_logp, l_logp, cfg.weight)
    return StepChoice(s2_token=pick_no_sync(scores, cfg, noise))


def _rule(ctx: CollectContext) -> LockstepRule:
    if ctx.slm_tuned is None:
        raise ValueError("--method proxy needs --slm-tuned PATH (the tuned small model)")
    cfg = ctx.config
    # System 1 is the tuned SLM; the base SLM is read for the shift s′ − s.
    return LockstepRule(
        (ctx.slm_tuned, ctx.llm, ctx.slm), lambda lp, g: proxy_step(lp[2], lp[0], lp[1], cfg, g)
    )


def _system1(ctx: CollectContext) -> LoadedModel:
    return ctx.slm_tuned or ctx.slm


SPEC = MethodSpec("proxy", "lockstep", rule=_rule, system1=_system1)
