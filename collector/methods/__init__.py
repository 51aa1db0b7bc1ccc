"""Decoding methods as step functions, one module each; the batch loops that call them: `collector.decode`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from collector.config import RunConfig

if TYPE_CHECKING:
    from collector.decode import BatchCollector


def batch_collector(config: RunConfig) -> BatchCollector:
    """The batch loop of a run (`collector.decode.batch_collector`, named here for existing callers)."""
    from collector.decode import batch_collector as pick

    return pick(config)
