"""What every decoding method shares: the step result and the per-batch output."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import torch

from collector.config import RunConfig
from collector.modeling import LoadedModel
from collector.token_stats import StepTrace


@dataclass(frozen=True)
class StepChoice:
    """System 2's choice for each row of one step: `s2_token` [B]."""

    s2_token: torch.Tensor


@dataclass(frozen=True)
class BatchOutput:
    """A finished batch on the device: the trace [B, T] and each row's generated length [B]."""

    trace: StepTrace
    valid: torch.Tensor
    extra: dict[str, torch.Tensor] = field(default_factory=dict)  # more per-token columns, [B, T]
    cycles: pa.Table | None = None  # speculative draft/verify rounds (sample index within the batch)


@dataclass(frozen=True)
class CollectContext:
    """What a method's batch loop needs: the loaded models, the shared vocabulary and the settings."""

    llm: LoadedModel
    slm: LoadedModel
    vocab: int
    config: RunConfig
    stop_strings: tuple[str, ...]
    slm_tuned: LoadedModel | None = None
    router: Any = None  # a collector.routers router; None means `always`
    generator: torch.Generator | None = None

    @property
    def device(self) -> torch.device:
        return next(self.llm.model.parameters()).device

    @property
    def system1(self) -> LoadedModel:
        """The model that would write alone (for proxy tuning: the tuned SLM)."""
        return self.slm_tuned if self.config.method == "proxy" and self.slm_tuned else self.slm
