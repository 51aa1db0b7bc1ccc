"""The zoo's shared tokenizer and its token streams, built from the built-in tasks' train split."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from collector.tasks.builtin import corpus_documents

EOS = "<|endoftext|>"
# Large enough that the attribute values, the task words and the code keywords are whole tokens, so the
# answer's value matches its option's value token for token.
VOCAB_SIZE = 1024
# Option markers of the choice task as whole tokens: the letter is then one token just before the option's
# value (" (" + letter would be two tokens, the first four-way ambiguous).
LETTER_TOKENS = (" (A)", " (B)", " (C)", " (D)")
MAX_LENGTH = 2048
TOKENIZER_DOCS = 6000
# Seed offsets keep the validation documents apart from the training stream of the same seed.
VALID_OFFSET = 1_000_003
TOKENIZER_OFFSET = 2_000_029


def train_tokenizer(seed: int) -> PreTrainedTokenizerFast:
    """A byte-level BPE with single-digit numbers, trained on base-corpus documents."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False)]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE - len(LETTER_TOKENS),
        special_tokens=[EOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(corpus_documents(seed + TOKENIZER_OFFSET, count=TOKENIZER_DOCS), trainer)
    tok.add_tokens([AddedToken(t, normalized=False) for t in LETTER_TOKENS])
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token=EOS,
        bos_token=EOS,
        pad_token=EOS,
        unk_token=EOS,
        model_max_length=MAX_LENGTH,
    )


def save_tokenizer(tokenizer: PreTrainedTokenizerFast, out: Path) -> None:
    """Save in Hugging Face format, loadable by AutoTokenizer under transformers 4 and 5."""
    tokenizer.save_pretrained(str(out))
    cfg_path = out / "tokenizer_config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["tokenizer_class"] = "PreTrainedTokenizerFast"
    cfg_path.write_text(json.dumps(cfg, indent=2) + "\n")


def encode_documents(tokenizer: PreTrainedTokenizerFast, docs: Sequence[str]) -> torch.Tensor:
    """One token stream: every document followed by EOS.  # stream: [T]"""
    eos = tokenizer.eos_token_id
    ids: list[int] = []
    for enc in tokenizer(list(docs), add_special_tokens=False)["input_ids"]:
        ids.extend(enc)
        ids.append(eos)
    return torch.tensor(ids, dtype=torch.long)


def token_stream(
    tokenizer: PreTrainedTokenizerFast, seed: int, tokens: int, *, tuned: bool = False
) -> torch.Tensor:
    """The first `tokens` tokens of the corpus of one seed; a longer request extends a shorter one."""
    count = max(64, tokens // 90)
    while True:
        stream = encode_documents(tokenizer, corpus_documents(seed, tuned=tuned, count=count))
        if stream.numel() >= tokens:
            return stream[:tokens]
        count = int(count * tokens / max(stream.numel(), 1) * 1.1) + 64


def windows(stream: torch.Tensor, seq_len: int) -> torch.Tensor:
    """Cut a stream into non-overlapping training windows.  # [N, seq_len]"""
    n = stream.numel() // seq_len
    return stream[: n * seq_len].view(n, seq_len)


@dataclass(frozen=True)
class Corpora:
    """Training stream plus base-mix and QA-only validation windows, all from one seed."""

    train: torch.Tensor  # [T]
    valid: torch.Tensor  # [Nv, seq_len]
    valid_qa: torch.Tensor  # [Nq, seq_len]


def build_corpora(tokenizer: PreTrainedTokenizerFast, seed: int, tokens: int, seq_len: int) -> Corpora:
    """The shared training stream and validation windows of one seed."""
    valid_tokens = 48 * seq_len
    return Corpora(
        train=token_stream(tokenizer, seed, tokens),
        valid=windows(token_stream(tokenizer, seed + VALID_OFFSET, valid_tokens), seq_len),
        valid_qa=windows(token_stream(tokenizer, seed + VALID_OFFSET, valid_tokens, tuned=True), seq_len),
    )
