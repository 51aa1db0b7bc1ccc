"""Where collection's CPU time goes, against the LLM's own static-batch `generate`: the LLM's forwards over
prompts (prefill: calls and the tokens they ran, padding included) and over one token per row (decode:
steps, rows per step), System 1's forwards, and the rest (the loop, the trace, the host cut to Arrow).

    python -m bench.bench_collect_split [--prompts 128] [--batch 16] [--max-new-tokens 64] [--repeats 5]

Same pair, prompts and settings as `bench.bench_collect` (zoo-l / zoo-xs on builtin:arith, default few-shot
prompts, stop strings off, one torch thread); runs: the LLM's `generate`, the oracle fast path in static
batches and refilled (continuous batching). Times are process CPU seconds (`time.process_time`), each the
median over interleaved repeats after a warm-up; forward times come from forward hooks on both models.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, fields, replace
from typing import Any

import torch

from bench.bench_collect import collect_tokens, generate_tokens, zoo_pair
from collector.config import RunConfig
from collector.engine import build_context
from collector.methods.base import CollectContext
from collector.tasks import load_task


@dataclass
class Split:
    """CPU seconds of one run by where they went, with the LLM's calls, tokens and steps."""

    total: float = 0.0
    prefill: float = 0.0
    prefill_calls: int = 0
    prefill_tokens: int = 0  # ids the prefills ran, left padding included
    decode: float = 0.0
    steps: int = 0
    row_steps: int = 0
    system1: float = 0.0

    @property
    def rest(self) -> float:
        return self.total - self.prefill - self.decode - self.system1


def cpu_split(ctx: CollectContext, run: Callable[[], int]) -> Split:
    """Run once with forward hooks on the LLM and System 1; the CPU seconds by where they went."""
    split, started = Split(), {}

    def before(module: Any, args: Any, kwargs: dict[str, Any]) -> None:
        started[id(module)] = time.process_time()

    def after(module: Any, args: Any, kwargs: dict[str, Any], out: Any) -> None:
        spent = time.process_time() - started.pop(id(module))
        ids = kwargs.get("input_ids")
        if module is not ctx.llm.model:
            split.system1 += spent
        elif ids is not None and ids.shape[1] == 1:
            split.decode, split.steps = split.decode + spent, split.steps + 1
            split.row_steps += ids.shape[0]
        else:
            split.prefill, split.prefill_calls = split.prefill + spent, split.prefill_calls + 1
            split.prefill_tokens += 0 if ids is None else ids.numel()

    models = [ctx.llm.model, ctx.system1.model]
    hooks = [m.register_forward_pre_hook(before, with_kwargs=True) for m in models]
    hooks += [m.register_forward_hook(after, with_kwargs=True) for m in models]
    try:
        start = time.process_time()
        run()
        split.total = time.process_time() - start
    finally:
        for h in hooks:
            h.remove()
    return split


def median_split(splits: list[Split]) -> Split:
    """Each field's median over repeats (counts are the same in every repeat)."""
    return Split(**{f.name: statistics.median(getattr(s, f.name) for s in splits) for f in fields(Split)})


def report(name: str, s: Split, gen: Split) -> None:
    rows = s.row_steps / s.steps if s.steps else 0.0
    ms = 1000 * s.decode / s.steps if s.steps else 0.0
    print(
        f"| {name} | {s.total:.2f} | {gen.total / s.total:.2f} | {s.prefill:.2f} | {s.prefill_calls} | "
        f"{s.prefill_tokens:,} | {s.decode:.2f} | {s.steps} | {rows:.1f} | {ms:.2f} | {s.system1:.2f} | "
        f"{s.rest:.2f} |"
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--prompts", type=int, default=128)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--max-new-tokens", type=int, default=64)
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args()
    torch.set_num_threads(1)
    llm, slm, _, desc = zoo_pair()
    base = RunConfig(
        llm=llm, slm=slm, dataset="builtin:arith", samples=args.prompts, max_new_tokens=args.max_new_tokens
    )
    task = replace(load_task("builtin:arith", samples=args.prompts, seed=0), stop_strings=())
    ctx = replace(build_context(base, task), stop_strings=())
    B = args.batch
    runs: dict[str, Callable[[], int]] = {
        f"LLM generate (batch {B})": lambda: generate_tokens(ctx, task, B),
        f"oracle fast path, static batches (batch {B})": lambda: collect_tokens(ctx, task, B, refill=False),
        f"oracle fast path, refilled (batch {B})": lambda: collect_tokens(ctx, task, B),
    }
    load = os.getloadavg()[0]
    for run in runs.values():  # warm-up
        run()
    splits: dict[str, list[Split]] = {name: [] for name in runs}
    for _ in range(args.repeats):
        for name, run in runs.items():
            splits[name].append(cpu_split(ctx, run))
    medians = {name: median_split(s) for name, s in splits.items()}
    gen = next(iter(medians.values()))
    print(f"pair: {desc}; builtin:arith, {args.prompts} prompts, max {args.max_new_tokens} new tokens")
    print(
        "\n| run | CPU s | × generate | LLM prefill s | calls | prompt ids | LLM decode s | steps "
        "| rows/step | ms/step | System 1 s | rest s |\n|---" + "|---:" * 11 + "|"
    )
    for name, s in medians.items():
        report(name, s, gen)
    print(f"\nload average (1 min) at start {load:.1f}, at end {os.getloadavg()[0]:.1f}; torch threads 1")


if __name__ == "__main__":
    main()
