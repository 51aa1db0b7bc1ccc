"""How often a draft agrees with its real model: greedy token agreement on the built-in tasks.

The real model writes greedy continuations of the tasks' prompts (in its chat format); each draft reads
those sequences once (teacher forcing) and agrees at a position when its own top-1 token is the real
model's. Positions after the real model's end-of-sequence token are not counted. This is 1 − the oracle
CoF of the pair on those prompts, without stop strings.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from collector.prompts import chat_task
from collector.tasks import load_task


@dataclass(frozen=True)
class Continuations:
    """The real model's greedy continuations: full sequences [B, P+T], mask, and the generated part."""

    ids: torch.Tensor  # [B, P+T]
    mask: torch.Tensor  # [B, P+T]
    prompt_len: int  # P (prompts are left-padded to it)
    counted: torch.Tensor  # [B, T] bool: generated positions up to and including EOS


def real_continuations(model: Any, tokenizer: Any, family: str, samples: int, tokens: int) -> Continuations:
    """Greedy continuations of `samples` items of one built-in family, in the model's chat format."""
    task = chat_task(load_task(f"builtin:{family}", samples=samples), tokenizer, "auto", "real model")
    prompts = [it.prompt for it in task.items]
    enc = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
    with torch.no_grad():
        out = model.generate(
            **enc, max_new_tokens=tokens, do_sample=False, pad_token_id=tokenizer.pad_token_id
        )  # [B, P+T]
    prompt_len = enc["input_ids"].shape[1]
    gen = out[:, prompt_len:]  # [B, T]
    eos = tokenizer.eos_token_id
    ended = torch.cumsum((gen == eos).int(), dim=1)
    counted = (ended == 0) | ((ended == 1) & (gen == eos))  # up to and including the first EOS
    mask = torch.cat([enc["attention_mask"], torch.ones_like(gen)], dim=1)
    return Continuations(out, mask, prompt_len, counted)


def agreement(draft: Any, runs: Sequence[Continuations]) -> tuple[int, int]:
    """(agreeing positions, counted positions) of a draft over the real model's continuations."""
    agree = total = 0
    for run in runs:
        pos = (run.mask.cumsum(dim=1) - 1).clamp_min(0)
        with torch.no_grad():
            logits = draft(input_ids=run.ids, attention_mask=run.mask, position_ids=pos).logits
        # logits at position t predict token t+1: the generated tokens are predicted from P-1 .. end-1
        guess = logits[:, run.prompt_len - 1 : -1].argmax(dim=-1)  # [B, T]
        real = run.ids[:, run.prompt_len :]
        agree += int(((guess == real) & run.counted).sum())
        total += int(run.counted.sum())
    return agree, total
