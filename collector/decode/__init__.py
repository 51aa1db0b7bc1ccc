"""The batch loops: lock-step (`lockstep`), draft/verify (`speculative`) and the oracle's fast path
(`oracle`); `batch_collector` picks the loop for a run. The methods' step functions live in
`collector.methods`."""

from __future__ import annotations

from collections.abc import Callable

import torch

from collector.architectures import oracle_fast_path
from collector.config import RunConfig
from collector.methods import method_spec
from collector.methods.base import BatchOutput, CollectContext

BatchCollector = Callable[[CollectContext, torch.Tensor, torch.Tensor], BatchOutput]


def batch_collector(config: RunConfig) -> BatchCollector:
    """The batch loop of a run: the fast oracle path where it applies, else the lock-step engine."""
    config.validate()
    if oracle_fast_path(config):
        from collector.decode.oracle import collect_oracle_batch

        return collect_oracle_batch
    if method_spec(config.method).loop == "speculative":
        from collector.decode.speculative import collect_speculative_batch

        return collect_speculative_batch
    from collector.decode.lockstep import collect_lockstep_batch

    return collect_lockstep_batch
