"""Routers decide per token whether System 2 is consulted: `consult_no_sync(figures, step) -> bool [B]`."""

from __future__ import annotations

from typing import Protocol

import torch

from collector.config import RunConfig
from collector.token_stats import Figures
from warehouse import vocabulary


class Router(Protocol):
    """Consults System 2 for the rows where it returns True; never synchronises the device."""

    def consult_no_sync(self, figures: Figures, step: torch.Tensor) -> torch.Tensor:
        """bool [B] from System 1's figures (each [B]) and the step index of each row [B]."""
        ...


def build_router(config: RunConfig) -> Router:
    """The router of a run, from its name, threshold and (for `learned`) its saved classifier."""
    from collector.routers.threshold import AlwaysRouter, NeverRouter, ThresholdRouter

    config.validate()  # the one validator: a threshold router has its threshold, `learned` its model
    if config.router == "always":
        return AlwaysRouter()
    if config.router == "never":
        return NeverRouter()
    rule = vocabulary.threshold_rule(config.router)
    if rule is not None and config.threshold is not None:
        return ThresholdRouter(rule, config.threshold)
    if config.router == "learned" and config.router_model:
        from collector.routers.learned import load_learned_router

        return load_learned_router(config.router_model, config.threshold)
    raise AssertionError(f"RunConfig.validate() let router {config.router!r} through")
