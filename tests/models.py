"""Tiny real transformers models for tests, built and saved in HF format (random weights)."""

from __future__ import annotations

from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import GPTNeoXConfig, GPTNeoXForCausalLM, PreTrainedTokenizerFast

CORPUS = [
    "the quick brown fox jumps over the lazy dog",
    "question: what is two plus three? answer: five",
    "def add(a, b):\n    return a + b",
    "numbers 0 1 2 3 4 5 6 7 8 9 and letters a b c d e f g",
] * 20


def make_tokenizer(out: Path, vocab_size: int = 320, seed_text: str = "") -> PreTrainedTokenizerFast:
    """A small byte-level BPE tokenizer with <eos>/<pad>, saved to `out`."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<eos>", "<pad>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator([seed_text + c for c in CORPUS], trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<eos>", pad_token="<pad>")
    fast.save_pretrained(out)
    return fast


def make_model(out: Path, tokenizer: PreTrainedTokenizerFast, hidden: int, layers: int, seed: int) -> Path:
    """A randomly initialised GPT-NeoX model saved in HF format beside its tokenizer."""
    torch.manual_seed(seed)
    cfg = GPTNeoXConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=4,
        intermediate_size=hidden * 4,
        max_position_embeddings=512,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.eos_token_id,
    )
    model = GPTNeoXForCausalLM(cfg)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out
