"""Oracle: System 2 is the LLM's own greedy choice (`argmax l`).

With the `always` router and greedy decoding the emitted text is the LLM's greedy output: the fast path
for that case is `collector.decode.oracle`.
"""

from __future__ import annotations

import torch

from collector.config import RunConfig
from collector.methods.base import CollectContext, LockstepRule, MethodSpec, StepChoice
from collector.sampling import pick_no_sync


def oracle_step(
    s_logp: torch.Tensor,
    l_logp: torch.Tensor,
    cfg: RunConfig | None = None,
    noise: torch.Tensor | None = None,
) -> StepChoice:
    """System 2's token: the LLM's argmax (a sample from the LLM when `cfg` samples and `noise` is given)."""
    if cfg is None or noise is None:
        return StepChoice(s2_token=l_logp.argmax(-1))
    return StepChoice(s2_token=pick_no_sync(l_logp, cfg, noise))


def _rule(ctx: CollectContext) -> LockstepRule:
    cfg = ctx.config
    return LockstepRule((ctx.slm, ctx.llm), lambda lp, g: oracle_step(lp[0], lp[1], cfg, g))


SPEC = MethodSpec("oracle", "lockstep", rule=_rule)
