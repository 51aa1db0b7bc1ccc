"""Model sizes without loading weights: parameters counted on the meta device, weight bytes per dtype.

A model that is not on disk is sized from the `config.json` shipped under `collector/sweeps/configs/`
for its folder name (the paper's Qwen1.5 and Pythia models), so `python -m collector.sweep paper
--dry-run` prints the grid, parameter counts and memory needs on any machine.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import torch

from collector.config import RunConfig
from collector.modeling import ModelLoadError, pick_dtype, resolve_spec

SHIPPED_CONFIGS = Path(__file__).parent / "configs"


def config_source(spec: str) -> tuple[str, bool]:
    """(where the model's config is read, whether it is a shipped stand-in for a model not on disk)."""
    try:
        return resolve_spec(spec)[1], False
    except ModelLoadError:
        shipped = SHIPPED_CONFIGS / Path(spec).name
        if (shipped / "config.json").exists():
            return str(shipped), True
        raise


@cache
def count_params(spec: str) -> int:
    """A model's parameters, counted from its config on the meta device (no weights are read)."""
    from transformers import AutoConfig, AutoModelForCausalLM

    path, _ = config_source(spec)
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
