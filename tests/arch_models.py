"""Tiny random models of many transformers architectures, built from configs (`AutoConfig.for_model`, no
download) with the zoo's tokenizer: the architecture matrix of `tests/collector/test_architectures.py`.

Every model has 2 layers and a hidden size of 32; windows (sliding, chunked, local attention) are 8 tokens,
shorter than prompt + output, so rolling a window back is exercised. `ARCHITECTURES` maps a model type to
the config settings it needs beyond `BASE` (head counts that divide, which layers are attention).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, PreTrainedTokenizerBase

from collector.zoo import resolve_model_path

WINDOW = 8  # tokens of every sliding / chunked / local attention window
BASE: dict[str, Any] = dict(
    hidden_size=32, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1,
    intermediate_size=64, head_dim=16, max_position_embeddings=256,
)  # fmt: skip
_MAMBA2 = dict(mamba_n_heads=4, mamba_d_head=16, mamba_expand=2, mamba_d_state=8)
_MOE = dict(num_local_experts=2, num_experts=2, num_experts_per_tok=1, moe_intermediate_size=32)
_HYBRID = ["linear_attention", "full_attention"]

# model type -> config settings beyond BASE; windows where the architecture has one
ATTENTION: dict[str, dict[str, Any]] = {
    "gpt_neox": {},
    "llama": {},
    "qwen2": {},
    "qwen3": {},
    "gemma": {},
    "phi3": {},
    "gpt2": {},
    "opt": {},
    "falcon": {"head_dim": None},
    "olmo2": {},
    "granite": {},
    "bloom": {},  # ALiBi
    "mpt": {},  # ALiBi
    "stablelm": {},
    "gpt_bigcode": {},
    "cohere": {},
    "phi": {},
}
WINDOWED: dict[str, dict[str, Any]] = {
    "mistral": {"sliding_window": WINDOW},
    "gemma2": {"sliding_window": WINDOW},  # sliding and full layers
    "gemma3_text": {"sliding_window": WINDOW},
    "cohere2": {"sliding_window": WINDOW},
    "starcoder2": {"sliding_window": WINDOW},
    "mixtral": {"sliding_window": WINDOW, **_MOE},
    "qwen2_sliding": {
        "model_type": "qwen2", "use_sliding_window": True, "sliding_window": WINDOW, "max_window_layers": 0,
    },
    "gpt_oss": {"sliding_window": WINDOW, **_MOE},  # attention sinks
    "llama4_text": {"attention_chunk_size": WINDOW, **_MOE},  # chunked attention
}  # fmt: skip
RECURRENT: dict[str, dict[str, Any]] = {
    "mamba": {"state_size": 8},
    "falcon_mamba": {"state_size": 8},
    "mamba2": {"num_heads": 4, "head_dim": 16, "n_groups": 1, "state_size": 8, "expand": 2},
    "recurrent_gemma": {
        "block_types": ["recurrent", "attention"], "lru_width": 32, "attention_window_size": WINDOW,
    },
    "jamba": {
        "attn_layer_period": 2, "attn_layer_offset": 1, "expert_layer_period": 2, "mamba_d_state": 8,
        "mamba_expand": 2, "use_mamba_kernels": False, **_MOE,
    },
    "bamba": {"attn_layer_indices": [1], **_MAMBA2},
    "zamba": {
        "num_hidden_layers": 3, "layers_block_type": ["mamba", "hybrid", "hybrid"], "mamba_d_state": 8,
        "mamba_expand": 2, "n_mamba_heads": 2, "use_mamba_kernels": False,
    },
    "granitemoehybrid": {"layer_types": _HYBRID, **_MAMBA2, **_MOE},
    "falcon_h1": {"mamba_d_ssm": 64, **_MAMBA2},
    "nemotron_h": {
        "hybrid_override_pattern": "M*", "mamba_num_heads": 4, "mamba_head_dim": 16, "ssm_state_size": 8,
        "n_groups": 1,
    },
    "qwen3_next": {
        "layer_types": _HYBRID, "linear_num_value_heads": 2, "linear_num_key_heads": 2,
        "linear_key_head_dim": 16, "linear_value_head_dim": 16, "shared_expert_intermediate_size": 32, **_MOE,
    },
    "lfm2": {"layer_types": ["conv", "full_attention"]},  # conv layers beside attention
    "rwkv": {"attention_hidden_size": 32, "context_length": 256},  # its own state, outside the cache
}  # fmt: skip
NOT_CAUSAL: dict[str, dict[str, Any]] = {
    "bert": {},  # a bidirectional encoder (BertLMHeadModel without is_decoder)
    "bart": {"encoder_layers": 1, "decoder_layers": 1},  # the decoder half of an encoder-decoder
}
ARCHITECTURES = {**ATTENTION, **WINDOWED, **RECURRENT, **NOT_CAUSAL}


def zoo_tokenizer() -> PreTrainedTokenizerBase:
    """The zoo's tokenizer (1,024 ids, shipped in the package)."""
    return AutoTokenizer.from_pretrained(resolve_model_path("zoo:zoo-xs"))


def make_arch_model(out: Path, name: str, tokenizer: PreTrainedTokenizerBase, seed: int) -> Path:
    """A random model of architecture `name` (a key of ARCHITECTURES), saved with the tokenizer."""
    if (out / "config.json").exists():
        return out
    settings = {**BASE, **ARCHITECTURES[name]}
    model_type = settings.pop("model_type", name)
    ids = dict(pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id, bos_token_id=0)
    config = AutoConfig.for_model(
        model_type, vocab_size=len(tokenizer), **ids, **{k: v for k, v in settings.items() if v is not None}
    )
    torch.manual_seed(seed)
    AutoModelForCausalLM.from_config(config).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out
