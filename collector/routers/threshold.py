"""Fixed and threshold routers: always, never, max_prob < τ, margin < τ, entropy > τ."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from collector.token_stats import Figures

if TYPE_CHECKING:
    from collector.routers import Router


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


@dataclass(frozen=True)
class MaxProbRouter:
    """Consult where System 1's top probability is below τ."""

    threshold: float

    def consult_no_sync(self, figures: Figures, step: torch.Tensor) -> torch.Tensor:
        return figures.prob < self.threshold


@dataclass(frozen=True)
class MarginRouter:
    """Consult where System 1's top-1 − top-2 probability margin is below τ."""

    threshold: float

    def consult_no_sync(self, figures: Figures, step: torch.Tensor) -> torch.Tensor:
        return figures.margin < self.threshold


@dataclass(frozen=True)
class EntropyRouter:
    """Consult where System 1's entropy (nats) is above τ."""

    threshold: float

    def consult_no_sync(self, figures: Figures, step: torch.Tensor) -> torch.Tensor:
        return figures.entropy > self.threshold


THRESHOLD_ROUTERS: dict[str, Callable[[float], Router]] = {
    "max_prob": MaxProbRouter,
    "margin": MarginRouter,
    "entropy": EntropyRouter,
}
