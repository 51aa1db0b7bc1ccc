"""Model sizes without loading weights: parameters counted on the meta device, weight bytes per dtype."""

from __future__ import annotations

from functools import cache

import torch

from collector.config import RunConfig
from collector.modeling import ModelLoadError, pick_dtype, resolve_spec


@cache
def count_params(spec: str) -> int:
    """A model's parameters, counted from its config on the meta device (no weights are read)."""
    from transformers import AutoConfig, AutoModelForCausalLM

    _, path = resolve_spec(spec)
    try:
        config = AutoConfig.from_pretrained(path)
    except (OSError, ValueError) as exc:
        raise ModelLoadError(
            f"cannot read the config of {spec!r} ({path}): {exc}; put the model on local disk "
            "(a folder with config.json) or use zoo:<name>"
        ) from exc
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    return sum(p.numel() for p in model.parameters())  # tied weights count once, as in load_model


def cell_models(config: RunConfig) -> tuple[str, ...]:
    """The models a cell loads (a model named twice is loaded once)."""
    return tuple(dict.fromkeys(m for m in (config.llm, config.slm, config.slm_tuned) if m))


def weight_bytes(config: RunConfig, device: str = "cuda") -> int:
    """Bytes of the cell's weights in the dtype they load in on `device` (bf16 on CUDA unless set)."""
    dtype = pick_dtype(config.dtype, torch.device(config.device or device))
    size = torch.empty((), dtype=dtype).element_size()
    return sum(count_params(m) for m in cell_models(config)) * size
