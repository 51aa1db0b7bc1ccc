"""Building a draft from a real model: round-to-nearest quantization or an early exit, saved as a folder.

Both recipes are deterministic (no data, no randomness): the same real model gives the same weights.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from collector.drafts import HF_PREFIX, RTN_GROUP, RealModel, Recipe, parse_recipe
from collector.gguf_files import ModelSource, build_atomically, cache_root

BUILD_VERSION = 1  # bump when a recipe's code changes: old builds are then rebuilt, not reused
DRAFT_FILE = "fsgen-draft.json"
LINEAR_NAMES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass(frozen=True)
class DraftRecord:
    """What a built draft is: its recipe, size and how long it took to build."""

    name: str
    recipe: str
    params: int
    bits: float  # mean bits per parameter as stored by the recipe (32 = fp32 kept)
    build_s: float


def rtn_dequantized(weight: torch.Tensor, bits: int, group: int = RTN_GROUP) -> torch.Tensor:
    """Group-wise asymmetric round-to-nearest of a [out, in] weight, returned dequantized (same shape)."""
    out_f, in_f = weight.shape
    if in_f % group:
        raise ValueError(f"input size {in_f} is not a multiple of the group size {group}")
    w = weight.detach().float().reshape(out_f, in_f // group, group)  # [out, groups, group]
    lo = w.amin(dim=-1, keepdim=True)
    hi = w.amax(dim=-1, keepdim=True)
    levels = 2**bits - 1
    scale = ((hi - lo) / levels).clamp_min(torch.finfo(torch.float32).tiny)
    q = torch.clamp(torch.round((w - lo) / scale), 0, levels)
    return (q * scale + lo).reshape(out_f, in_f)


def decoder_layers(model: Any) -> Any:
    """The model's list of decoder layers (Llama-style `model.model.layers`)."""
    return model.model.layers


def apply_recipe(model: Any, recipe: Recipe) -> float:
    """Turn the loaded real model into the draft in place; returns mean bits per parameter."""
    layers = decoder_layers(model)
    if recipe.kind == "exit":
        parse_recipe(recipe.name, len(layers))  # k must be below the model's layer count
        model.model.layers = layers[: recipe.value]
        model.config.num_hidden_layers = recipe.value
        if getattr(model.config, "layer_types", None):
            model.config.layer_types = model.config.layer_types[: recipe.value]
        return 32.0
    quantized = 0
    with torch.no_grad():
        for module in layers.modules():
            for name in LINEAR_NAMES:
                linear = getattr(module, name, None)
                if isinstance(linear, torch.nn.Linear):
                    linear.weight.copy_(rtn_dequantized(linear.weight, recipe.value))
                    quantized += linear.weight.numel()
    total = sum(p.numel() for p in model.parameters())
    return (quantized * (recipe.value + 32 * 2 / RTN_GROUP) + (total - quantized) * 32) / total


def drafts_root(real_folder: Path) -> Path:
    """Where the drafts of one (dequantized) real model are kept."""
    return cache_root() / "drafts" / f"{real_folder.name}-v{BUILD_VERSION}"


def read_record(folder: Path) -> DraftRecord | None:
    """The build record of a draft folder, or None when it is not a finished build."""
    file = folder / DRAFT_FILE
    return DraftRecord(**json.loads(file.read_text())) if file.is_file() else None


def draft_folder(real: RealModel, real_folder: Path, recipe: Recipe) -> Path:
    """The folder of a draft, built (atomically) when it is not in the cache yet."""
    folder = drafts_root(real_folder) / recipe.name
    if read_record(folder) is not None:
        return folder
    build_atomically(folder, lambda out: build_into(real, real_folder, recipe, out))
    return folder


def build_into(real: RealModel, real_folder: Path, recipe: Recipe, out: Path) -> None:
    """Load the real model, apply the recipe, save model, tokenizer and records into `out`."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    start = time.perf_counter()
    model = AutoModelForCausalLM.from_pretrained(real_folder, dtype=torch.float32)
    bits = apply_recipe(model, recipe)
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(real_folder).save_pretrained(out)
    name = f"{HF_PREFIX}{real.name}/{recipe.name}"
    quant = f"rtn{recipe.value} g{RTN_GROUP}" if recipe.kind == "rtn" else None
    ModelSource(f"{HF_PREFIX}{real.name} ({recipe.describe()})", quant).write(out)
    params = sum(p.numel() for p in model.parameters())
    build_s = round(time.perf_counter() - start, 2)
    record = DraftRecord(name, recipe.describe(), params, round(bits, 3), build_s)
    (out / DRAFT_FILE).write_text(json.dumps(asdict(record), indent=1) + "\n")
