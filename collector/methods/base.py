"""What every decoding method shares: the step result, the per-batch output, the lock-step rule and the
method's spec (what the collector needs to run it; its name, settings and needs are its vocabulary term)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import pyarrow as pa
import torch

from collector.config import RunConfig
from collector.modeling import LoadedModel
from collector.token_stats import StepTrace
from warehouse import vocabulary


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
        """The model that would write alone: the method's (for proxy tuning: the tuned SLM)."""
        from collector.methods import method_spec

        return method_spec(self.config.method).system1(self)


@dataclass(frozen=True)
class LockstepRule:
    """A method as the lock-step engine runs it: the models to step and System 2's step function."""

    models: tuple[LoadedModel, ...]  # System 1 first, the LLM second, then any model the rule also reads
    # System 2's choice [B] from each model's log-probs [B, V] (in `models` order) and the sampling noise
    choose: Callable[[Sequence[torch.Tensor], torch.Tensor | None], StepChoice]


Loop = Literal["lockstep", "speculative"]  # every model steps together; or System 1 drafts, the LLM verifies


def base_slm(ctx: CollectContext) -> LoadedModel:
    """System 1 of most methods: the SLM."""
    return ctx.slm


def no_problem(config: RunConfig) -> str | None:
    """A method with no settings of its own to check."""
    return None


@dataclass(frozen=True)
class MethodSpec:
    """A decoding method as the collector runs it; each method module exports one as `SPEC`
    (`collector.methods.method_spec`). Its name, the settings it reads and what it needs (a tuned SLM, the
    `always` router, a place in the default job) are its term in `warehouse.vocabulary`."""

    name: str
    loop: Loop
    rule: Callable[[CollectContext], LockstepRule] | None = None  # lock-step: models and System 2's step
    system1: Callable[[CollectContext], LoadedModel] = base_slm  # the model that would write alone
    # What is wrong with this method's own settings; every run checks every method's (a setting is recorded
    # with the run, and so validated, whether or not its method reads it).
    check: Callable[[RunConfig], str | None] = no_problem

    @property
    def term(self) -> vocabulary.MethodTerm:
        term = vocabulary.method_term(self.name)
        if term is None:
            raise LookupError(
                f"method {self.name} has a spec but no term in warehouse.vocabulary.METHOD_TERMS"
            )
        return term

    @property
    def drafts(self) -> bool:
        """A draft/verify method: its calibration covers draft lengths up to its K, each of its batches is
        paired with the LLM's own generate, and it needs a cache that can be rolled back."""
        return self.loop == "speculative"
