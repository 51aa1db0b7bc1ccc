"""Speculative decoding: System 1 drafts K tokens, the LLM verifies all K in one forward pass.

Greedy: keep the longest draft prefix that matches argmax l, then the LLM's own token (the correction, or a
bonus token when all K match): the output is the LLM's greedy output. Sampling: accept draft d with
probability min(1, p(d)/q(d)); at the first rejection draw from max(0, p − q) normalised; after K
acceptances draw the bonus from p: the output is distributed as the LLM's (Leviathan et al., 2023).

The draft/verify loop that calls `speculative_step` is `collector.decode.speculative`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from collector.config import RunConfig
from collector.methods.base import MethodSpec
from collector.routers.threshold import figure_name
from collector.sampling import gumbel_no_sync, sampling_logp
from collector.token_stats import figures_no_sync
from warehouse import vocabulary


@dataclass(frozen=True)
class SpecVerdict:
    """One verification: accepted drafts per row [B] (0..K); tokens [B, K+1], the first n+1 emitted."""

    accepted: torch.Tensor
    tokens: torch.Tensor


def accepted_prefix_no_sync(ok: torch.Tensor) -> torch.Tensor:
    """Length of the leading run of True in each row of ok [B, K]: [B]."""
    return ok.long().cumprod(dim=-1).sum(dim=-1)


def _drafted_mask(draft: torch.Tensor, drafted: torch.Tensor | None) -> torch.Tensor:
    """[B, K]: True at the positions each row really drafted (all K without a stop rule)."""
    if drafted is None:
        return torch.ones_like(draft, dtype=torch.bool)
    return torch.arange(draft.shape[1], device=draft.device) < drafted[:, None]


def verify_greedy(
    draft: torch.Tensor, l_logp: torch.Tensor, drafted: torch.Tensor | None = None
) -> SpecVerdict:
    """Keep the longest prefix of draft [B, K] equal to argmax l [B, K+1] (at most `drafted` [B]); then the
    LLM's token."""
    target = l_logp.argmax(-1)  # [B, K+1]
    ok = (draft == target[:, :-1]) & _drafted_mask(draft, drafted)
    return SpecVerdict(accepted_prefix_no_sync(ok), target)


def verify_sampling(
    draft: torch.Tensor,
    q_logp: torch.Tensor,
    p_logp: torch.Tensor,
    generator: torch.Generator | None,
    drafted: torch.Tensor | None = None,
) -> SpecVerdict:
    """The accept/resample rule: draft [B, K] drawn from q [B, K, V]; the LLM's p [B, K+1, V] (log-probs);
    a row that drafted fewer than K tokens (`drafted` [B]) takes its bonus from p right after them."""
    q, p = q_logp.exp(), p_logp.exp()
    idx = draft.unsqueeze(-1)  # [B, K, 1]
    q_d, p_d = q.gather(-1, idx).squeeze(-1), p[:, :-1].gather(-1, idx).squeeze(-1)  # [B, K]
    u = torch.rand(draft.shape, generator=generator, device=draft.device)
    mask = _drafted_mask(draft, drafted)
    n = accepted_prefix_no_sync((u * q_d < p_d) & mask)  # accept with probability min(1, p/q)
    resid = torch.where(mask[..., None], (p[:, :-1] - q).clamp_min(0.0), p[:, :-1])
    residual = torch.cat([resid, p[:, -1:]], dim=1)  # [B, K+1, V]
    noise = gumbel_no_sync(residual.shape, generator, draft.device)
    drawn = (residual.log() + noise).argmax(-1)  # [B, K+1]: one draw from each normalised residual
    j = torch.arange(draft.shape[1] + 1, device=draft.device)
    tokens = torch.where(j < n[:, None], torch.cat([draft, drawn[:, -1:]], dim=1), drawn)
    return SpecVerdict(n, tokens)


def speculative_step(
    draft: torch.Tensor,
    s_logp: torch.Tensor,
    l_logp: torch.Tensor,
    cfg: RunConfig,
    generator: torch.Generator | None = None,
    drafted: torch.Tensor | None = None,
) -> SpecVerdict:
    """Verify draft [B, K] given System 1's log-probs [B, K, V] and the LLM's [B, K+1, V]."""
    if cfg.greedy:
        return verify_greedy(draft, l_logp, drafted)
    q = sampling_logp(s_logp, cfg.temperature, cfg.top_p)
    p = sampling_logp(l_logp, cfg.temperature, cfg.top_p)
    return verify_sampling(draft, q, p, generator, drafted)


def keeps_drafting_no_sync(s_logp: torch.Tensor, stop: str, threshold: float) -> torch.Tensor:
    """[B]: System 1 is confident enough to draft the next token (its stop rule does not hold: for
    max_prob < τ, max_prob ≥ τ)."""
    rule = vocabulary.THRESHOLD_RULES[stop]
    stops: torch.Tensor = rule.holds(getattr(figures_no_sync(s_logp), figure_name(rule)), threshold)
    return ~stops


SPEC = MethodSpec("speculative", "speculative")  # its loop: collector.decode.speculative
