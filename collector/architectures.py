"""What each architecture can serve: a model is a causal attention LM (every method), a causal LM with a
recurrent state (Mamba, conv or linear-attention layers, alone or beside attention: no speculative
decoding, which must roll a rejected draft back), a model that keeps its state outside transformers'
cache (RWKV: only the oracle's generate, one prompt at a time), or not a causal LM at all (refused).
Checked on the loaded models' classes and configs before any model runs.

Sliding-window and chunked attention layers count as attention: the speculative loop keeps every slot of
their caches and compacts its rollback holes (`collector.decode.speculative`), so they are token-identical.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

from transformers.models.auto.modeling_auto import (
    MODEL_FOR_MASKED_LM_MAPPING_NAMES,
    MODEL_FOR_SEQ_TO_SEQ_CAUSAL_LM_MAPPING_NAMES,
)

from collector.config import RunConfig
from collector.methods import method_spec, method_specs
from warehouse.errors import UserError

Kind = Literal["attention", "recurrent", "own_state", "not_causal"]

# Cache layer types (transformers' `layer_types`) that hold only per-token keys and values: a slot can be
# forgotten by masking it. Any other type ("linear_attention", "conv", "hybrid", ...) carries a state.
ATTENTION_LAYERS = frozenset(
    {"full_attention", "sliding_attention", "chunked_attention", "dummy", "moe", "mlp"}
)


class ArchitectureError(UserError):
    """A method cannot serve one of the run's models; the message says what works instead."""


@dataclass(frozen=True)
class Architecture:
    """A loaded model as the methods see it."""

    name: str  # the run's model argument
    cls: str  # e.g. MambaForCausalLM
    model_type: str  # e.g. mamba
    kind: Kind
    why: str  # what makes it that kind, for a refusal

    def label(self) -> str:
        return f"{self.name} ({self.cls}, {self.model_type})"


def _layer_types(config: Any) -> list[str]:
    text = config.get_text_config(decoder=True) if hasattr(config, "get_text_config") else config
    types = getattr(text, "layer_types", None) or getattr(text, "layers_block_type", None)
    return [str(t) for t in types] if isinstance(types, (list, tuple)) else []


def classify(name: str, model: Any) -> Architecture:
    """The kind of a loaded causal-LM model object (its class and config; nothing runs)."""
    config = model.config
    model_type = str(getattr(config, "model_type", "?"))
    cls = type(model).__name__

    def arch(kind: Kind, why: str) -> Architecture:
        return Architecture(name, cls, model_type, kind, why)

    if (
        getattr(config, "is_encoder_decoder", False)
        or model_type in MODEL_FOR_SEQ_TO_SEQ_CAUSAL_LM_MAPPING_NAMES
    ):
        return arch("not_causal", "it is (the decoder of) an encoder-decoder model")
    if model_type in MODEL_FOR_MASKED_LM_MAPPING_NAMES and not getattr(config, "is_decoder", False):
        return arch("not_causal", "it is a bidirectional encoder (is_decoder is off)")
    params = inspect.signature(type(model).forward).parameters
    if not {"cache", "past_key_values"} & set(params):
        return arch("own_state", "it keeps its state outside transformers' cache and reads no attention mask")
    state = sorted(set(_layer_types(config)) - ATTENTION_LAYERS)
    if state:
        return arch("recurrent", f"its {', '.join(state)} layers carry a state")
    if getattr(model, "_is_stateful", False):
        return arch("recurrent", "it carries a recurrent state")
    return arch("attention", "")


def oracle_fast_path(config: RunConfig) -> bool:
    """Whether the run is the oracle's generate + teacher-forced pass (`collector.decode.batch_collector`)."""
    return config.method == "oracle" and config.router == "always" and config.greedy


def refusal(config: RunConfig, arch: Architecture) -> str | None:
    """The one-line refusal of running `config` with this model, or None when it runs token-identically."""
    if arch.kind == "not_causal":
        return (
            f"{arch.label()} is not a causal language model: {arch.why}; fsgen decodes with decoder-only "
            "causal LMs (e.g. Llama, Qwen, Gemma, Mistral, GPT-NeoX, Mamba): pick one of those"
        )
    if arch.kind == "own_state" and not (oracle_fast_path(config) and config.batch_size == 1):
        return (
            f"--method {config.method} --router {config.router} --batch-size {config.batch_size} cannot run "
            f"{arch.label()}: {arch.why}; use --method oracle --router always --batch-size 1 "
            "(its own generate, one prompt at a time, without left padding)"
        )
    if arch.kind == "recurrent" and method_spec(config.method).drafts:
        steady = ", ".join(s.name for s in method_specs() if not s.drafts)
        return (
            f"--method {config.method} cannot run {arch.label()}: {arch.why}, which cannot be rolled back to "
            f"the accepted drafts; use a method that never rolls back: {steady} (oracle: the LLM's generate "
            "and one teacher-forced SLM pass)"
        )
    return None


def check_models(config: RunConfig, models: Iterable[tuple[str, Any]]) -> list[Architecture]:
    """Classify (name, model) pairs; raise ArchitectureError with the first refusal."""
    archs = [classify(name, model) for name, model in models]
    for arch in archs:
        reason = refusal(config, arch)
        if reason:
            raise ArchitectureError(reason)
    return archs


def can_speculate(models: Iterable[tuple[str, Any]]) -> bool:
    """Whether speculative cycles can run on every model (calibration times them for oracle runs too)."""
    return all(classify(name, m).kind == "attention" for name, m in models)
