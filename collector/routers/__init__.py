"""Routers decide per token whether System 2 is consulted: `consult_no_sync(figures, step) -> bool [B]`."""

from __future__ import annotations

from typing import Protocol

import torch

from collector.config import RunConfig
from collector.figures import Figures


class Router(Protocol):
    """Consults System 2 for the rows where it returns True; never synchronises the device."""

    def consult_no_sync(self, figures: Figures, step: torch.Tensor) -> torch.Tensor:
        """bool [B] from System 1's figures (each [B]) and the step index of each row [B]."""
        ...


def build_router(config: RunConfig) -> Router:
    """The router of a run, from its name, threshold and (for `learned`) its saved classifier."""
    from collector.routers.threshold import THRESHOLD_ROUTERS, AlwaysRouter, NeverRouter

    if config.method == "speculative" and config.router != "always":
        raise ValueError(
            f"--method speculative verifies every draft with the LLM; --router {config.router} does not "
            "apply (use --router always, or a lock-step method such as oracle)"
        )
    if config.router == "always":
        return AlwaysRouter()
    if config.router == "never":
        return NeverRouter()
    if config.router in THRESHOLD_ROUTERS:
        if config.threshold is None:
            raise ValueError(f"--router {config.router} needs --threshold T")
        return THRESHOLD_ROUTERS[config.router](config.threshold)
    if config.router == "learned":
        from collector.routers.learned import load_learned_router

        if not config.router_model:
            raise ValueError(
                "--router learned needs --router-model PATH (from python -m collector.router train)"
            )
        return load_learned_router(config.router_model, config.threshold)
    raise ValueError(f"unknown router {config.router!r}")
