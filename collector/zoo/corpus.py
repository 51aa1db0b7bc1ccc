"""The zoo's training text (documents drawn from the built-in tasks' train split), its shared tokenizer and
its token streams."""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from collector.tasks.builtin import draw
from collector.tasks.builtin.arith import arith_example
from collector.tasks.builtin.choice import choice_example, choice_keys, entities, entity_bio, popularity
from collector.tasks.builtin.code import weighted_code
from collector.tasks.builtin.world import (
    BUILTIN_FAMILIES,
    EXAMPLE_SEPARATOR,
    N_ENTITIES,
    Example,
    is_test,
    seeded_rng,
)

# ---------------------------------------------------------------- training text


def _fresh_example(family: str, rng: random.Random) -> Example:
    """A newly drawn train-split example: a train fact with fresh options, or a new generated problem.

    Drawing afresh (rather than repeating the fixed pool) leaves nothing to memorise but the facts: a
    model has to read the options to find the letter, and the description to find the constants.
    """
    if family == "choice":
        keys = choice_keys()["train"]
        i, attribute = keys[rng.randrange(len(keys))]
        return choice_example(entities()[i], attribute, rng)
    return draw(arith_example if family == "arith" else weighted_code, rng, test=False)


def _episode(family: str, rng: random.Random) -> str:
    """One to three solved train-split examples of a family in the few-shot format."""
    return EXAMPLE_SEPARATOR.join(_fresh_example(family, rng).text for _ in range(rng.randint(1, 3)))


def _raw_document(family: str, rng: random.Random) -> str:
    """A raw (non-QA) document: worked statements, prose facts or plain functions."""
    if family == "choice":  # a few bios, so a prose document is about as long as the other kinds
        picks = rng.choices(range(N_ENTITIES), popularity(), k=rng.randint(3, 6))
        return "\n".join(entity_bio(entities()[i], rng) for i in picks)
    gen = arith_example if family == "arith" else weighted_code
    parts = []
    for _ in range(rng.randint(2, 4)):
        while True:
            ex, raw = gen(rng)
            if not is_test(ex.key):
                parts.append(raw)
                break
    return ("\n\n" if family == "arith" else "\n\n\n").join(parts)


# Share of each document kind in the base corpus; QA episodes are a small share, the rest raw text.
QA_WEIGHTS = (0.35, 0.35, 0.3)
BASE_MIX = (("choice", "raw", 0.25), ("arith", "raw", 0.2), ("code", "raw", 0.15), ("any", "qa", 0.4))


def corpus_documents(seed: int = 0, *, tuned: bool = False, count: int = 1000) -> list[str]:
    """`count` training documents from the train split: the base mix, or QA episodes only when tuned."""
    rng = seeded_rng(seed, "corpus", tuned)
    kinds, weights = [(f, k) for f, k, _ in BASE_MIX], [w for _, _, w in BASE_MIX]
    docs = []
    for _ in range(count):
        family, kind = ("any", "qa") if tuned else rng.choices(kinds, weights)[0]
        if family == "any":
            family = rng.choices(BUILTIN_FAMILIES, QA_WEIGHTS)[0]
        docs.append(_episode(family, rng) if kind == "qa" else _raw_document(family, rng))
    return docs


# ---------------------------------------------------------------- tokenizer and streams

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
