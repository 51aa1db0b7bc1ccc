"""Fixed and threshold routers: always, never, and one generic rule on a System 1 figure (max_prob < τ,
margin < τ, entropy > τ, ...: `warehouse.vocabulary.THRESHOLD_RULES`)."""

from __future__ import annotations

import functools
from dataclasses import dataclass, fields

import torch

from collector.token_stats import Figures
from warehouse.vocabulary import ThresholdRule

FIGURE_PREFIX = "s1_"  # a rule's feature is System 1's figure as the trace names it (s1_prob: Figures.prob)


@dataclass(frozen=True)
class AlwaysRouter:
    """System 2 decides every token (the paper's normal setting)."""

    def consult_no_sync(self, figures: Figures, step: torch.Tensor) -> torch.Tensor:
        return torch.ones_like(figures.prob, dtype=torch.bool)


@dataclass(frozen=True)
class NeverRouter:
    """System 1 writes alone (System 2's figures are still recorded)."""

    def consult_no_sync(self, figures: Figures, step: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(figures.prob, dtype=torch.bool)


@functools.cache
def figure_name(rule: ThresholdRule) -> str:
    """The `Figures` field a rule reads (its feature column without the `s1_` prefix)."""
    name = rule.feature.removeprefix(FIGURE_PREFIX)
    if not rule.feature.startswith(FIGURE_PREFIX) or name not in {f.name for f in fields(Figures)}:
        raise ValueError(f"rule {rule.name}: {rule.feature} is not one of System 1's figures")
    return name


@dataclass(frozen=True)
class ThresholdRouter:
    """Consult where the rule holds on System 1's figure (e.g. max_prob < τ, entropy > τ)."""

    rule: ThresholdRule
    threshold: float

    def consult_no_sync(self, figures: Figures, step: torch.Tensor) -> torch.Tensor:
        consult: torch.Tensor = self.rule.holds(getattr(figures, figure_name(self.rule)), self.threshold)
        return consult
