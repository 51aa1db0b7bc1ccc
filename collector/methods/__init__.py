"""Decoding methods: one module each; `batch_collector` picks the batch loop for a run."""

from __future__ import annotations

from collections.abc import Callable

import torch

from collector.config import RunConfig
from collector.methods.base import BatchOutput, CollectContext

BatchCollector = Callable[[CollectContext, torch.Tensor, torch.Tensor], BatchOutput]


def check_decoding(config: RunConfig) -> None:
    """Refuse decoding settings no engine can honour, saying what to change."""
    if config.temperature < 0:
        raise ValueError(f"--temperature {config.temperature} is negative; use 0 (greedy) or more")
    if not 0.0 < config.top_p <= 1.0:
        raise ValueError(f"--top-p {config.top_p} is outside (0, 1]; 1 keeps every token")
    if config.method == "speculative":
        if config.draft_k < 1:
            raise ValueError(f"--draft-k {config.draft_k} must be at least 1")
        if config.router != "always":
            raise ValueError(
                f"--method speculative verifies every draft with the LLM; --router {config.router} does not "
                "apply (use --router always, or a lock-step method such as oracle)"
            )
    if config.method == "contrastive" and not 0.0 <= config.alpha <= 1.0:
        raise ValueError(f"--alpha {config.alpha} is outside [0, 1] (the paper uses 0.1)")


def batch_collector(config: RunConfig) -> BatchCollector:
    """The batch loop of a run: the fast oracle path where it applies, else the lock-step engine."""
    check_decoding(config)
    if config.method == "oracle" and config.router == "always" and config.greedy:
        from collector.methods.oracle import collect_oracle_batch

        return collect_oracle_batch
    if config.method == "speculative":
        from collector.methods.speculative import collect_speculative_batch

        return collect_speculative_batch
    from collector.lockstep import collect_lockstep_batch

    return collect_lockstep_batch
