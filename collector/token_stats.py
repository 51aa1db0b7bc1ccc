"""Per-token statistics of both models (top token, probability, entropy, margin) and the step trace, computed
as tensors on the device (never synchronised per token)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from collector.sampling import sampling_logp


@dataclass(frozen=True)
class Figures:
    """Top choice, its probability, entropy (nats) and top-1 − top-2 margin; all [...] tensors."""

    token: torch.Tensor
    prob: torch.Tensor
    entropy: torch.Tensor
    margin: torch.Tensor


def log_probs(logits: torch.Tensor, vocab: int) -> torch.Tensor:
    """log_softmax over the shared vocabulary, in fp32 for stable figures."""
    return torch.log_softmax(logits[..., :vocab].float(), dim=-1)


def figures_no_sync(logp: torch.Tensor) -> Figures:
    """Figures of a log-probability tensor [..., V]."""
    probs = logp.exp()
    top = probs.topk(2, dim=-1)  # values/indices: [..., 2]
    entropy = -(probs * logp).nan_to_num(0.0).sum(-1)
    return Figures(
        token=top.indices[..., 0],
        prob=top.values[..., 0],
        entropy=entropy,
        margin=top.values[..., 0] - top.values[..., 1],
    )


@dataclass(frozen=True)
class StepTrace:
    """Everything recorded for one generated token of each row; every field [B] (or [B, T])."""

    token: torch.Tensor
    s1: Figures
    llm: Figures
    s2_token: torch.Tensor
    llm_prob_s1_token: torch.Tensor
    consulted: torch.Tensor
    accept_prob: (
        torch.Tensor
    )  # Σ_v min(p_s(v), p_l(v)): P(accept) of a drawn draft under speculative sampling

    @staticmethod
    def stack(steps: list[StepTrace]) -> StepTrace:
        """Stack per-step traces [B] into one [B, T] trace (still on the device)."""

        def cat(get: object) -> torch.Tensor:
            return torch.stack([get(s) for s in steps], dim=1)  # type: ignore[operator]

        def figs(which: str) -> Figures:
            return Figures(
                token=cat(lambda s: getattr(s, which).token),
                prob=cat(lambda s: getattr(s, which).prob),
                entropy=cat(lambda s: getattr(s, which).entropy),
                margin=cat(lambda s: getattr(s, which).margin),
            )

        return StepTrace(
            token=cat(lambda s: s.token),
            s1=figs("s1"),
            llm=figs("llm"),
            s2_token=cat(lambda s: s.s2_token),
            llm_prob_s1_token=cat(lambda s: s.llm_prob_s1_token),
            consulted=cat(lambda s: s.consulted),
            accept_prob=cat(lambda s: s.accept_prob),
        )


def accept_prob_no_sync(
    s_logp: torch.Tensor, l_logp: torch.Tensor, temperature: float = 0.0, top_p: float = 1.0
) -> torch.Tensor:
    """Σ_v min(p_s(v), p_l(v)) of both models' sampling distributions [..., V] -> [...] (greedy: T = 1)."""
    if temperature > 0:
        s_logp, l_logp = sampling_logp(s_logp, temperature, top_p), sampling_logp(l_logp, temperature, top_p)
    return torch.minimum(s_logp, l_logp).exp().sum(-1)


def trace_no_sync(
    token: torch.Tensor,
    s_logp: torch.Tensor,
    l_logp: torch.Tensor,
    s2_token: torch.Tensor,
    consulted: torch.Tensor,
    temperature: float = 0.0,
    top_p: float = 1.0,
) -> StepTrace:
    """The trace of emitted `token` given both models' log-probs [..., V] and System 2's choice."""
    s1 = figures_no_sync(s_logp)
    llm = figures_no_sync(l_logp)
    llm_prob_s1 = l_logp.gather(-1, s1.token.unsqueeze(-1)).squeeze(-1).exp()
    accept = accept_prob_no_sync(s_logp, l_logp, temperature, top_p)
    return StepTrace(token, s1, llm, s2_token, llm_prob_s1, consulted, accept)
