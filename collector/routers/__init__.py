"""Routers decide per token whether System 2 is consulted."""

from __future__ import annotations

from typing import Any

from collector.config import RunConfig


def build_router(config: RunConfig) -> Any:
    """The router of a run; None means `always` (System 2 consulted for every token)."""
    if config.router == "always":
        return None
    raise NotImplementedError(f"router {config.router} is not available yet")
