"""Greedy, temperature and top-p choices as tensor ops (no host synchronisation).

Sampling is Gumbel-max: token = argmax(log q + g) with g ~ Gumbel(0, 1) draws exactly from q. System 1 and
System 2 share the same noise g in a lock-step step, so two identical distributions always pick the same
token: a mismatch under sampling means the distributions differ, not that two dice fell differently.
"""

from __future__ import annotations

import torch

from collector.config import RunConfig


def gumbel_no_sync(
    shape: torch.Size, generator: torch.Generator | None, device: torch.device
) -> torch.Tensor:
    """Standard Gumbel noise of `shape` from the run's seeded generator."""
    u = torch.rand(shape, generator=generator, device=device)
    return -torch.log(-torch.log(u))  # u = 0 gives -inf (never picked), never NaN


def top_p_filter(logp: torch.Tensor, top_p: float) -> torch.Tensor:
    """Keep the smallest set of top tokens whose mass reaches `top_p` (the top one always); -inf elsewhere."""
    if top_p >= 1.0:
        return logp
    sorted_lp, order = logp.sort(dim=-1, descending=True)  # both [..., V]
    probs = sorted_lp.exp()
    before = probs.cumsum(-1) - probs  # probability mass ranked strictly above each token
    drop_sorted = before >= top_p
    drop = torch.empty_like(drop_sorted).scatter_(-1, order, drop_sorted)
    return logp.masked_fill(drop, float("-inf"))


def sampling_logp(scores: torch.Tensor, temperature: float, top_p: float) -> torch.Tensor:
    """log q of the distribution a sampler draws from: softmax(scores / T) cut to top-p and renormalised."""
    logp = torch.log_softmax(scores.float() / temperature, dim=-1)
    return torch.log_softmax(top_p_filter(logp, top_p), dim=-1) if top_p < 1.0 else logp


def pick_no_sync(scores: torch.Tensor, config: RunConfig, noise: torch.Tensor | None = None) -> torch.Tensor:
    """argmax of `scores` [..., V] when greedy (or no noise given), else a Gumbel-max sample: [...]."""
    if config.greedy or noise is None:
        return scores.argmax(-1)
    return (sampling_logp(scores, config.temperature, config.top_p) + noise).argmax(-1)
