"""Per-token statistics of both models (top token, probability, entropy, margin) and the step trace, computed
as tensors on the device (never synchronised per token)."""

from __future__ import annotations

from dataclasses import dataclass, field, fields

import pyarrow as pa
import torch

from collector.sampling import sampling_logp
from warehouse.catalogue import EVENT_SCHEMA


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


# Field metadata: a figure recorded on the device, not a `token_events` column (its Arrow type, as a
# column's, says how it is held on the device).
NOT_STORED = {"stored": False, "type": pa.float32()}


@dataclass(frozen=True)
class StepTrace:
    """Everything recorded for one generated token of each row, named as the `token_events` columns;
    every field [B] (or [B, T])."""

    token_id: torch.Tensor  # the emitted token
    s1_token_id: torch.Tensor
    s1_prob: torch.Tensor
    s1_entropy: torch.Tensor
    s1_margin: torch.Tensor
    s2_token_id: torch.Tensor
    llm_token_id: torch.Tensor
    llm_prob: torch.Tensor
    llm_entropy: torch.Tensor
    llm_margin: torch.Tensor = field(metadata=NOT_STORED)
    llm_prob_s1_token: torch.Tensor
    consulted: torch.Tensor
    accept_prob: torch.Tensor  # Σ_v min(p_s(v), p_l(v)): P(accept) of a drawn draft (speculative sampling)

    @staticmethod
    def of(
        token_id: torch.Tensor,
        s1: Figures,
        llm: Figures,
        s2_token_id: torch.Tensor,
        llm_prob_s1_token: torch.Tensor,
        consulted: torch.Tensor,
        accept_prob: torch.Tensor,
    ) -> StepTrace:
        """The trace from both models' figures."""
        return StepTrace(
            token_id=token_id, s1_token_id=s1.token, s1_prob=s1.prob, s1_entropy=s1.entropy,
            s1_margin=s1.margin, s2_token_id=s2_token_id, llm_token_id=llm.token, llm_prob=llm.prob,
            llm_entropy=llm.entropy, llm_margin=llm.margin, llm_prob_s1_token=llm_prob_s1_token,
            consulted=consulted, accept_prob=accept_prob,
        )  # fmt: skip

    def as_dict(self) -> dict[str, torch.Tensor]:
        """The trace as named tensors (the inverse of `from_dict`)."""
        return {name: getattr(self, name) for name in TRACE_FIELDS}

    @staticmethod
    def from_dict(d: dict[str, torch.Tensor]) -> StepTrace:
        """A trace from named tensors (the inverse of `as_dict`; other keys are ignored)."""
        return StepTrace(**{name: d[name] for name in TRACE_FIELDS})

    @staticmethod
    def stack(steps: list[StepTrace]) -> StepTrace:
        """Stack per-step traces [B] into one [B, T] trace (still on the device)."""
        return StepTrace(**{n: torch.stack([getattr(s, n) for s in steps], dim=1) for n in TRACE_FIELDS})


TRACE_FIELDS = tuple(f.name for f in fields(StepTrace))
STORED_FIELDS = tuple(f.name for f in fields(StepTrace) if f.metadata.get("stored", True))  # columns
_UNSTORED_TYPES = {
    f.name: f.metadata["type"] for f in fields(StepTrace) if not f.metadata.get("stored", True)
}
if not set(STORED_FIELDS) <= set(EVENT_SCHEMA.names):  # the trace is named after the warehouse's columns
    raise TypeError(
        f"StepTrace fields {sorted(set(STORED_FIELDS) - set(EVENT_SCHEMA.names))} are no token_events "
        "columns: add each to warehouse.models.TokenEvent (with its migration) or mark it NOT_STORED"
    )
# Device dtype of each Arrow type of a column: small ints and flags as stored, other ints as int64 (ids).
_TORCH_OF = {pa.bool_(): torch.bool, pa.int16(): torch.int16, pa.float32(): torch.float32}


def device_dtype(name: str) -> torch.dtype:
    """The dtype a trace field or event column is held in on the device, from the column's Arrow type in
    the warehouse (a float column is float32 whatever its name; an unknown name is a KeyError)."""
    arrow = _UNSTORED_TYPES[name] if name in _UNSTORED_TYPES else EVENT_SCHEMA.field(name).type
    if pa.types.is_floating(arrow):
        return torch.float32
    return _TORCH_OF.get(arrow, torch.long)


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
    s2_token_id: torch.Tensor,
    consulted: torch.Tensor,
    temperature: float = 0.0,
    top_p: float = 1.0,
) -> StepTrace:
    """The trace of emitted `token` given both models' log-probs [..., V] and System 2's choice."""
    s1 = figures_no_sync(s_logp)
    llm = figures_no_sync(l_logp)
    llm_prob_s1 = l_logp.gather(-1, s1.token.unsqueeze(-1)).squeeze(-1).exp()
    accept = accept_prob_no_sync(s_logp, l_logp, temperature, top_p)
    return StepTrace.of(token, s1, llm, s2_token_id, llm_prob_s1, consulted, accept)
