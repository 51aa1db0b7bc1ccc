"""Collection throughput, all ratios measured in one process on the same pair and prompts:

- a per-token loop in the style of the paper's released code (batch 1, both models stepped one token at a
  time with their caches, top-100 probabilities of both converted to Python lists every step);
- the LLM's own greedy `generate` (batch 16 and 64, and batch 1 for speculative decoding);
- the oracle fast path and the lock-step methods at batch 16 and 64, as the engine runs them: done rows
  refilled with the next prompts (continuous batching, `collector.decode.refill`); the oracle fast path also
  in static batches, as before refilling (device trace + host cut to Arrow included; staging and ingest are
  measured by bench_ingest);
- speculative decoding (greedy, batch 1) against the LLM's greedy `generate`, beside the analytic
  expectation (1 − a^(K+1)) / ((1 − a)(K·c + 1)) from the measured acceptance a and cost ratio c, and
  beside the advisor's prediction from a measured real cycle (both forwards plus the loop's own work).

    python -m bench.bench_collect [--prompts 128] [--batch 16 64] [--max-new-tokens 64] [--threads 1]
                                  [--repeats 3] [--no-speculative]

The pair is the zoo's largest and smallest model when `collector/zoo/models` exists, else two randomly
initialised GPT-NeoX models about 30x apart built here. Each timing is the median over repeats, with the
methods interleaved so that load from other work on the machine falls on all of them alike.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

import torch

from collector.batch import batch_tables
from collector.config import RunConfig
from collector.costs import cycle_seconds, prefill_seconds
from collector.decode import BatchCollector, batch_collector
from collector.decode.lockstep import Decoder, collect_lockstep_batch
from collector.decode.speculative import collect_speculative_batch, cycles_for_samples
from collector.engine import build_context, chunks, decode_batches
from collector.methods.base import CollectContext
from collector.modeling import LoadedModel, forward
from collector.prompts import encode_batch
from collector.routers import build_router
from collector.tasks import load_task
from collector.tasks.base import Task, TaskItem


@dataclass(frozen=True)
class Timing:
    """Generated tokens, median wall seconds and median CPU seconds of this process, of one method."""

    name: str
    tokens: int
    seconds: float
    cpu_seconds: float = 0.0  # process CPU time: other work on a shared machine barely moves it

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds

    @property
    def tokens_per_cpu_s(self) -> float:
        return self.tokens / self.cpu_seconds


def zoo_pair() -> tuple[str, str, str | None, str]:
    """(llm, slm, tuned slm, description): the zoo's largest and smallest, else random models built here."""
    try:
        from collector.zoo import TUNED_FOR, zoo_models

        base = [e for e in zoo_models() if not e.tuned]
        if len(base) >= 2:
            small, large = base[0], base[-1]
            tuned = TUNED_FOR.get(small.name)
            desc = f"zoo:{large.name} ({large.params:,} params) / zoo:{small.name} ({small.params:,})"
            return f"zoo:{large.name}", f"zoo:{small.name}", f"zoo:{tuned}" if tuned else None, desc
    except (ImportError, FileNotFoundError):
        pass
    llm, slm, tuned, desc = random_pair(Path(tempfile.mkdtemp(prefix="fsgen-bench-")))
    return llm, slm, tuned, f"{desc} (no zoo found)"


def random_pair(root: Path) -> tuple[str, str, str | None, str]:
    """Two random GPT-NeoX models about 30x apart in parameters, sharing a small byte-level BPE tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM, PreTrainedTokenizerFast

    task = load_task("builtin:arith", samples=64, seed=1)
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=512, special_tokens=["<eos>"])
    tok.train_from_iterator([it.prompt for it in task.items], trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<eos>", pad_token="<eos>")
    paths = []
    for name, hidden, layers, seed in (("llm", 256, 6, 1), ("slm", 64, 2, 2)):
        torch.manual_seed(seed)
        cfg = GPTNeoXConfig(
            vocab_size=len(fast), hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=4,
            intermediate_size=4 * hidden, max_position_embeddings=2048, tie_word_embeddings=False,
            eos_token_id=0, pad_token_id=0, bos_token_id=0,
        )  # fmt: skip
        model = GPTNeoXForCausalLM(cfg)
        model.save_pretrained(root / name)
        fast.save_pretrained(root / name)
        paths.append((str(root / name), sum(p.numel() for p in model.parameters())))
    (llm, n_llm), (slm, n_slm) = paths
    return llm, slm, None, f"random GPT-NeoX {n_llm:,} / {n_slm:,} params"


def paper_loop(ctx: CollectContext, task: Task) -> int:
    """Batch 1, both models one token at a time with their caches, top-100 of both to Python lists."""
    records: list[tuple[list[float], list[int], list[float], list[int]]] = []
    eos, tokens = ctx.llm.tokenizer.eos_token_id, 0
    for item in task.items:
        ids, mask, _ = encode_batch(ctx, [item])
        pos = torch.arange(ids.shape[1])[None]
        caches = [Decoder(m.model, ctx.vocab).cache for m in (ctx.llm, ctx.slm)]
        with torch.inference_mode():
            outs = [
                forward(m.model, ids, mask, pos, c) for m, c in zip((ctx.llm, ctx.slm), caches, strict=True)
            ]
            for _ in range(ctx.config.max_new_tokens):
                l_probs, s_probs = (torch.softmax(o.logits[0, -1, : ctx.vocab], -1) for o in outs)
                l_top, s_top = l_probs.topk(100), s_probs.topk(100)
                records.append(
                    (
                        l_top.values.tolist(),
                        l_top.indices.tolist(),
                        s_top.values.tolist(),
                        s_top.indices.tolist(),
                    )
                )
                token = int(l_probs.argmax().item())
                tokens += 1
                if token == eos:
                    break
                mask = torch.cat([mask, torch.ones_like(mask[:, :1])], 1)
                pos = pos[:, -1:] + 1
                step = torch.tensor([[token]])
                outs = [
                    forward(m.model, step, mask, pos, c)
                    for m, c in zip((ctx.llm, ctx.slm), caches, strict=True)
                ]
    return tokens


def generate_tokens(ctx: CollectContext, task: Task, batch: int) -> int:
    """The LLM's own greedy generate over the prompts; generated tokens up to EOS."""
    tok, tokens = ctx.llm.tokenizer, 0
    for chunk in chunks(list(range(len(task.items))), batch):
        ids, mask, _ = encode_batch(ctx, [task.items[i] for i in chunk])
        with torch.inference_mode():
            out = ctx.llm.model.generate(
                input_ids=ids, attention_mask=mask, max_new_tokens=ctx.config.max_new_tokens, do_sample=False,
                pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id,
            )  # fmt: skip
        gen = out[:, ids.shape[1] :]
        is_eos = (gen == tok.eos_token_id).int()
        ends = torch.where(is_eos.any(1), is_eos.argmax(1) + 1, gen.shape[1])
        tokens += int(ends.sum())
    return tokens


def collect_tokens(
    ctx: CollectContext,
    task: Task,
    batch: int,
    spec_stats: list[Any] | None = None,
    collect: BatchCollector | None = None,
    refill: bool = True,
) -> int:
    """A collector's batches over the prompts as the engine decodes them (refilled rows where the loop
    refills, `collector.decode.refill`; static batches with refill=False), host cut to Arrow included;
    recorded tokens."""
    ctx = replace(ctx, config=replace(ctx.config, batch_size=batch))
    collect, tokens = collect or batch_collector(ctx.config), 0
    todo = list(range(len(task.items)))
    for part in decode_batches(ctx, task.items, todo, collect if refill else _static(collect)):
        items = [task.items[i] for i in part.chunk]
        _, events = batch_tables(
            part.out.trace, part.valid, part.chunk, items, part.prompt_tokens, ctx.llm.tokenizer, task,
            part.out.extra,
        )  # fmt: skip
        tokens += events.num_rows
        if spec_stats is not None and part.out.cycles is not None:
            spec_stats.append(part.out.cycles)
    return tokens


def _static(collect: BatchCollector) -> BatchCollector:
    """The same batch loop under another name: it has no refilling twin, so batches stay static."""
    return lambda ctx, ids, mask: collect(ctx, ids, mask)


def forward_seconds(
    ctx: CollectContext, model: LoadedModel, item: TaskItem, n: int, steps: int = 100
) -> float:
    """Seconds of one cached forward of n new tokens (batch 1), after the prompt, median of a few runs."""
    ids, mask, _ = encode_batch(ctx, [item])
    runs = []
    for _ in range(3):
        dec = Decoder(model.model, ctx.vocab)
        with torch.inference_mode():
            dec.prefill(ids, mask)
            tokens = ids[:, -1:].expand(1, n)
            dec.feed(tokens)
            start = time.perf_counter()
            for _ in range(steps):
                dec.feed(tokens)
            runs.append((time.perf_counter() - start) / steps)
    return statistics.median(runs)


def acceptance(cycles: list[Any], k: int) -> float:
    """Per-token acceptance a: accepted drafts over verified positions (rejections end a cycle)."""
    acc = [int(a) for table in cycles for a in table.column("accepted").to_pylist()]
    trials = sum(a + (a < k) for a in acc)
    return sum(acc) / trials if trials else 0.0


def expected_speedup(a: float, k: int, c: float) -> float:
    """(1 − a^(K+1)) / ((1 − a)(K·c + 1)); K + 1 tokens per cycle when a = 1."""
    per_cycle = k + 1 if a >= 1.0 else (1 - a ** (k + 1)) / (1 - a)
    return per_cycle / (k * c + 1)


def timed(runs: dict[str, Callable[[], int]], repeats: int) -> dict[str, Timing]:
    """Median wall and CPU time of each run, interleaved over repeats (after one warm-up each)."""
    tokens = {name: run() for name, run in runs.items()}  # warm-up, and the token counts
    seconds: dict[str, list[float]] = {name: [] for name in runs}
    cpu: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            start, start_cpu = time.perf_counter(), time.process_time()
            run()
            seconds[name].append(time.perf_counter() - start)
            cpu[name].append(time.process_time() - start_cpu)
    return {n: Timing(n, tokens[n], statistics.median(seconds[n]), statistics.median(cpu[n])) for n in runs}


def with_cfg(c: CollectContext, **kw: Any) -> CollectContext:
    """The same models under other settings (router rebuilt, stop strings off)."""
    cfg = replace(c.config, **kw)
    return replace(c, config=cfg, router=build_router(cfg), stop_strings=())


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--prompts", type=int, default=128)
    p.add_argument("--batch", type=int, nargs="+", default=[16, 64], help="batch sizes of the batched runs")
    p.add_argument("--loop-prompts", type=int, default=8, help="prompts for the batch-1 runs")
    p.add_argument("--max-new-tokens", type=int, default=64)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--draft-k", type=int, nargs="+", default=[3, 5])
    p.add_argument("--shots", type=int, help="few-shot examples per prompt (default: the task's)")
    p.add_argument("--random-pair", action="store_true", help="random models ~30x apart even if a zoo exists")
    p.add_argument("--no-speculative", action="store_true", help="skip the speculative decoding table")
    return p.parse_args()


def batch_runs_of(
    ctx: CollectContext, tuned_ctx: CollectContext | None, task: Task, B: int
) -> dict[str, Callable[[], int]]:
    """The LLM's generate, the oracle fast path (refilled, and in static batches as before refilling) and
    every lock-step method, at batch B."""
    runs: dict[str, Callable[[], int]] = {
        f"LLM generate (batch {B})": lambda: generate_tokens(ctx, task, B),
        f"oracle fast path, static batches (batch {B})": lambda: collect_tokens(ctx, task, B, refill=False),
        f"oracle fast path (batch {B})": lambda: collect_tokens(ctx, task, B),
        f"oracle lock-step, router always (batch {B})": lambda: collect_tokens(
            ctx, task, B, collect=collect_lockstep_batch
        ),
        f"oracle lock-step, entropy router τ = 1 (batch {B})": lambda: collect_tokens(
            with_cfg(ctx, router="entropy", threshold=1.0), task, B
        ),
        f"contrastive (batch {B})": lambda: collect_tokens(with_cfg(ctx, method="contrastive"), task, B),
    }
    if tuned_ctx is not None:
        runs[f"proxy (batch {B})"] = lambda: collect_tokens(with_cfg(tuned_ctx, method="proxy"), task, B)
    return runs


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    llm, slm, tuned, desc = (
        random_pair(Path(tempfile.mkdtemp(prefix="fsgen-bench-"))) if args.random_pair else zoo_pair()
    )
    base = RunConfig(
        llm=llm, slm=slm, dataset="builtin:arith", samples=args.prompts, max_new_tokens=args.max_new_tokens
    )
    task = load_task("builtin:arith", samples=args.prompts, seed=0, shots=args.shots)
    task = replace(task, stop_strings=())  # pure token throughput: every method stops at EOS or the limit
    small = replace(task, items=task.items[: args.loop_prompts])
    ctx = build_context(base, task)
    ctx = replace(ctx, stop_strings=())
    tuned_ctx = build_context(replace(base, slm_tuned=tuned), task) if tuned else None
    load = os.getloadavg()[0]
    runs: dict[str, Callable[[], int]] = {
        "paper-style per-token loop (batch 1)": lambda: paper_loop(ctx, small)
    }
    for B in args.batch:
        runs |= batch_runs_of(ctx, tuned_ctx, task, B)
    batch_runs = timed(runs, args.repeats)
    report_batch(batch_runs, desc, args, load)
    if not args.no_speculative:
        report_speculative(ctx, small, args)
    print(
        f"\nload average (1 min) at start {load:.1f}, at end {os.getloadavg()[0]:.1f}; "
        f"torch threads {args.threads}"
    )


def report_batch(t: dict[str, Timing], desc: str, args: argparse.Namespace, load: float) -> None:
    """One table: tokens/s against the per-token loop and against the LLM's generate at the same batch."""
    loop = t["paper-style per-token loop (batch 1)"].tokens_per_s
    shots = "default" if args.shots is None else args.shots
    print(
        f"pair: {desc}; builtin:arith ({shots} shots), {args.prompts} prompts, "
        f"max {args.max_new_tokens} new tokens"
    )
    print(
        "\n| run | tokens | s | tokens/s | × per-token loop | × LLM generate (same batch) "
        "| CPU s | × LLM generate, CPU time |\n|---|---:|---:|---:|---:|---:|---:|---:|"
    )
    for name, x in t.items():
        batch = name[name.rindex("(") :]
        gen = t.get(f"LLM generate {batch}")
        wall = f"{x.tokens_per_s / gen.tokens_per_s:.2f}" if gen else ""
        cpu = f"{x.tokens_per_cpu_s / gen.tokens_per_cpu_s:.2f}" if gen else ""
        print(
            f"| {name} | {x.tokens} | {x.seconds:.2f} | {x.tokens_per_s:.0f} | "
            f"{x.tokens_per_s / loop:.1f} | {wall} | {x.cpu_seconds:.2f} | {cpu} |"
        )


def report_speculative(ctx: CollectContext, task: Task, args: argparse.Namespace) -> None:
    item = task.items[0]
    llm_1 = forward_seconds(ctx, ctx.llm, item, 1)
    c = forward_seconds(ctx, ctx.slm, item, 1) / llm_1
    ids, mask, _ = encode_batch(ctx, [item])
    prefill = statistics.mean(prefill_seconds(ctx, *encode_batch(ctx, [it])[:2]) for it in task.items)
    print(f"\ncost ratio c (SLM / LLM cached single-token forward, batch 1) = {c:.2f}")
    print(
        "\n| K | acceptance a | tokens/cycle | expected speed-up | verify pass / single-token pass "
        "| expected with that verify cost | measured cycle (ms) | predicted from measured cycles "
        "| measured speed-up | identical to LLM greedy | sum(accepted) + cycles = tokens |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for k in args.draft_k:
        spec = with_cfg(ctx, method="speculative", draft_k=k)
        cycles: list[Any] = []
        runs: dict[str, Callable[[], int]] = {
            "gen": partial(generate_tokens, ctx, task, 1),
            "spec": partial(collect_tokens, spec, task, 1, cycles),
        }
        t = timed(runs, args.repeats)
        a = acceptance(cycles, k)
        same = identical_outputs(ctx, spec, task)
        n_cycles = sum(tb.num_rows for tb in cycles) // (args.repeats + 1)
        per_cycle = t["spec"].tokens / n_cycles
        v = forward_seconds(ctx, ctx.llm, item, k + 1) / llm_1
        with_verify = expected_speedup(a, k, c) * (k * c + 1) / (k * c + v)
        cycle_s = cycle_seconds(spec, ids, mask, k, repeats=7)  # a real cycle: both models, loop, host check
        predicted = (
            t["spec"].tokens / (len(task.items) * prefill + n_cycles * cycle_s) / t["gen"].tokens_per_s
        )
        print(
            f"| {k} | {a:.3f} | {per_cycle:.2f} | {expected_speedup(a, k, c):.2f} | {v:.2f} | "
            f"{with_verify:.2f} | {cycle_s * 1000:.1f} | {predicted:.2f} | "
            f"{t['spec'].tokens_per_s / t['gen'].tokens_per_s:.2f} | {same}/{len(task.items)} | "
            f"{consistent_samples(spec, task)}/{len(task.items)} |"
        )


def consistent_samples(spec: CollectContext, task: Task) -> int:
    """Samples whose staged cycles satisfy sum(accepted) + cycles = n_tokens."""
    ok = 0
    for i, item in enumerate(task.items):
        ids, mask, prompt_tokens = encode_batch(spec, [item])
        out = collect_speculative_batch(spec, ids, mask)
        tok = spec.llm.tokenizer
        samples, _ = batch_tables(
            out.trace, out.valid.tolist(), [i], [item], prompt_tokens, tok, task, out.extra
        )
        n = samples.column("n_tokens").to_pylist()
        assert out.cycles is not None
        cyc = cycles_for_samples(out.cycles, [i], n)
        ok += sum(cyc.column("accepted").to_pylist()) + cyc.num_rows == n[0]
    return ok


def identical_outputs(ctx: CollectContext, spec: CollectContext, task: Task) -> int:
    """Prompts whose speculative output equals the LLM's greedy generate, token for token."""
    same = 0
    collect = batch_collector(spec.config)
    for item in task.items:
        ids, mask, _ = encode_batch(ctx, [item])
        with torch.inference_mode():
            gen = ctx.llm.model.generate(
                input_ids=ids, attention_mask=mask, max_new_tokens=ctx.config.max_new_tokens, do_sample=False,
                pad_token_id=ctx.llm.tokenizer.pad_token_id, eos_token_id=ctx.llm.tokenizer.eos_token_id,
            )[0, ids.shape[1] :].tolist()  # fmt: skip
        out = collect(spec, ids, mask)
        mine = out.trace.token_id[0, : int(out.valid[0])].tolist()
        eos = ctx.llm.tokenizer.eos_token_id
        gen = gen[: gen.index(eos) + 1] if eos in gen else gen
        same += mine == gen
    return same


if __name__ == "__main__":
    main()
