"""A run's measured costs: what a speculative speed-up prediction needs, timed on the run's own device.

At the start of a run (a short calibration on its first prompts): a draft/verify cycle of the speculative
loop for each draft length d (its real per-cycle cost: both models' forwards plus the loop's own work,
from whole decodes of a prompt, each beside the LLM's generate of the same prompt), the prefill of both
models per prompt, and the LLM's own greedy `generate` throughput (the baseline a speed-up is against).
During the run: the seconds spent decoding (the batch loop, without staging) and, for a speculative run, the
`baseline`: the LLM's own greedy `generate` over each of the run's batches, timed right after that batch's
decode (the same prompts, batch size and moment, so load on the machine falls on both alike). A measured
speed-up is `decode` tokens/s over `baseline` tokens/s. Rows of `run_costs`.
"""

from __future__ import annotations

import functools
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

import torch
from transformers import StoppingCriteria, StoppingCriteriaList

from collector.config import RunConfig
from collector.decode.lockstep import Decoder
from collector.methods import method_spec
from collector.methods.base import CollectContext
from collector.prompts import encode_batch
from collector.tasks.base import TaskItem
from warehouse.vocabulary import ADVISE_K

REPEATS = 3  # timings per figure; the median is kept
STEPS = 4  # forwards (or cycles) per timing


@dataclass(frozen=True)
class Cost:
    """One measured cost (a row of run_costs without its run_id)."""

    kind: str  # one of warehouse.vocabulary.COST_KINDS
    tokens: int
    batch_size: int
    seconds: float
    measured_by: str | None = None  # run_key of the run whose calibration measured it; None: this run

    def row(self) -> dict[str, Any]:
        return asdict(self)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _median_seconds(
    run: Callable[[], object], device: torch.device, steps: int = STEPS, repeats: int = REPEATS
) -> float:
    """Median over `repeats` of the mean seconds of `run` (after one warm-up)."""
    run()
    times = []
    for _ in range(repeats):
        _sync(device)
        start = time.perf_counter()
        for _ in range(steps):
            run()
        _sync(device)
        times.append((time.perf_counter() - start) / steps)
    return statistics.median(times)


def _timed_once(run: Callable[[], object], device: torch.device) -> float:
    _sync(device)
    start = time.perf_counter()
    run()
    _sync(device)
    return time.perf_counter() - start


def _encode(ctx: CollectContext, items: Sequence[TaskItem]) -> tuple[torch.Tensor, torch.Tensor]:
    ids, mask, _ = encode_batch(ctx, items)
    return ids, mask


@torch.inference_mode()
def cycle_seconds(
    ctx: CollectContext,
    ids: torch.Tensor,
    mask: torch.Tensor,
    d: int,
    repeats: int = REPEATS,
    steps: int = STEPS,
) -> float:
    """Seconds of one real draft/verify cycle drafting d tokens and its host check (no stop rule) over the
    batch ids/mask [B, P], no row ever finishing."""
    from collector.decode.speculative import SpeculativeBatch

    cfg = replace(ctx.config, draft_k=d, draft_stop=None, draft_threshold=None)
    tokens = (d + 1) * (steps * (repeats + 1) + 1)  # every row keeps drafting for the whole timing
    run = SpeculativeBatch(replace(ctx, config=cfg), ids, mask, max_tokens=tokens, stop_on_eos=False)

    def cycle_and_check() -> None:  # a lone row is checked after every cycle, as the batch loop does
        run.cycle()
        run.check()

    return _median_seconds(cycle_and_check, ctx.device, steps=steps, repeats=repeats)


@torch.inference_mode()
def prefill_seconds(ctx: CollectContext, ids: torch.Tensor, mask: torch.Tensor) -> float:
    """Seconds to prefill both models with the prompts ids/mask [B, P]."""

    def run() -> None:
        for m in (ctx.system1, ctx.llm):
            Decoder(m.model, ctx.vocab).prefill(ids, mask)

    return _median_seconds(run, ctx.device, steps=1)


def _generate(ctx: CollectContext, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    tok = ctx.llm.tokenizer
    return ctx.llm.model.generate(  # type: ignore[no-any-return]
        input_ids=ids, attention_mask=mask, max_new_tokens=ctx.config.max_new_tokens,
        do_sample=False, pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id,
        stop_strings=list(ctx.stop_strings) or None, tokenizer=tok if ctx.stop_strings else None,
    )  # fmt: skip


@torch.inference_mode()
def generate_cost(ctx: CollectContext, items: Sequence[TaskItem], batch: int, warm: bool = True) -> Cost:
    """The LLM's own greedy generate over `items` in batches: generated tokens (to EOS) and seconds (with
    `warm`, the faster of two passes per batch, else one)."""
    eos, tokens, seconds = ctx.llm.tokenizer.eos_token_id, 0, 0.0
    for first in range(0, len(items), batch):
        ids, mask = _encode(ctx, items[first : first + batch])
        run = functools.partial(_generate, ctx, ids, mask)
        _sync(ctx.device)
        start = time.perf_counter()
        gen = run()[:, ids.shape[1] :]
        _sync(ctx.device)
        first_s = time.perf_counter() - start
        if eos is not None:
            is_eos = (gen == eos).int()
            tokens += int(torch.where(is_eos.any(1), is_eos.argmax(1) + 1, gen.shape[1]).sum())
        else:
            tokens += gen.numel()
        seconds += min(first_s, _timed_once(run, ctx.device)) if warm else first_s
    return Cost("llm_generate", tokens, batch, seconds)


def pairs_baseline(config: RunConfig) -> bool:
    """Whether a run times the LLM's generate on each of its batches (speculative runs, calibration on)."""
    return config.calibrate and method_spec(config.method).drafts


def baseline_cost(ctx: CollectContext, items: Sequence[TaskItem]) -> Cost:
    """The LLM's own greedy generate over one batch of the run (once, cold like the decode it is paired
    with): the denominator of the run's measured speed-up."""
    g = generate_cost(ctx, items, len(items), warm=False)
    return Cost("baseline", g.tokens, ctx.config.batch_size, g.seconds)


def calibration_batch_sizes(config: RunConfig) -> tuple[int, ...]:
    """Batch sizes a run needs its pair's costs at: 1 (the figures a latency prediction divides) and the
    run's own batch size (a speed-up at the size it ran). Costs at any other size are never invented."""
    return tuple(sorted({1, config.batch_size}))


def draft_lengths(config: RunConfig) -> tuple[int, ...]:
    """Draft lengths a pair is calibrated for: the advisor's grid, and 1..K of a longer speculative K."""
    top = config.draft_k if method_spec(config.method).drafts else 0
    return tuple(range(1, max(max(ADVISE_K), top) + 1))


def cycle_lengths(lengths: tuple[int, ...]) -> tuple[int, ...]:
    """Draft lengths whose whole cycle is timed (a cycle's cost is near linear in d: the advisor
    interpolates between them): 1, 2, 4, 8, ... up to the longest, and the longest."""
    if not lengths:
        return ()
    top = max(lengths)
    return tuple(sorted({*(2**i for i in range(top.bit_length()) if 2**i <= top), top}))


def cycle_free_costs(ctx: CollectContext, items: Sequence[TaskItem]) -> list[Cost]:
    """A pair that runs no speculative cycles (a recurrent model): the prefill and the LLM's generate at
    batch 1."""
    prefill = statistics.mean(prefill_seconds(ctx, *_encode(ctx, [it])) for it in items)
    return [Cost("prefill", 0, 1, prefill), generate_cost(ctx, items, 1)]


GENERATE_STEPS = 16  # decoding steps of the LLM's generate timed per batch size
BATCH_REPEATS = 2  # timings per figure above batch 1 (a batch of 64 few-shot prompts is slow to prefill)


class _StepClock(StoppingCriteria):
    """Notes the time after each decoding step of `generate` (never stops it)."""

    def __init__(self, device: torch.device) -> None:
        self.device, self.times = device, list[float]()

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        _sync(self.device)
        self.times.append(time.perf_counter())
        return torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)


@torch.inference_mode()
def generate_step_seconds(ctx: CollectContext, ids: torch.Tensor, mask: torch.Tensor) -> float:
    """Seconds of one decoding step of the LLM's own generate over the batch ids/mask [B, P], every row
    decoding: the time between its first and last step (the prefill left out), median of BATCH_REPEATS."""
    tok, steps = ctx.llm.tokenizer, []
    for _ in range(BATCH_REPEATS):
        clock = _StepClock(ctx.device)
        ctx.llm.model.generate(
            input_ids=ids, attention_mask=mask, max_new_tokens=GENERATE_STEPS + 1,
            min_new_tokens=GENERATE_STEPS + 1, do_sample=False, pad_token_id=tok.pad_token_id,
            eos_token_id=tok.eos_token_id, stopping_criteria=StoppingCriteriaList([clock]),
        )  # fmt: skip
        steps.append((clock.times[-1] - clock.times[0]) / (len(clock.times) - 1))
    return statistics.median(steps)


def batch_costs(ctx: CollectContext, items: Sequence[TaskItem], batch: int, top: int) -> list[Cost]:
    """At batch size `batch` (every row decoding): a draft/verify cycle drafting 1 and `top` tokens (the
    advisor interpolates between them) and the LLM's generate over GENERATE_STEPS steps (`llm_generate`:
    batch × steps tokens, their seconds)."""
    ids, mask = _encode(ctx, (list(items) * batch)[:batch])
    costs = [
        Cost("cycle", d, batch, cycle_seconds(ctx, ids, mask, d, BATCH_REPEATS, steps=2))
        for d in sorted({1, top})
    ]
    step = generate_step_seconds(ctx, ids, mask)
    return [*costs, Cost("llm_generate", batch * GENERATE_STEPS, batch, step * GENERATE_STEPS)]


ROUNDS = 2  # passes over the calibration prompts for the batch-1 figures a speed-up prediction divides


@torch.inference_mode()
def decode_seconds(
    ctx: CollectContext, ids: torch.Tensor, mask: torch.Tensor, d: int, stop_rule: bool = False
) -> tuple[float, int]:
    """Seconds and cycles of a whole greedy speculative decode of one prompt drafting d tokens per cycle, as
    the batch loop runs it (prefill, cycles, host checks, the trace). With `stop_rule`, a max_prob rule that
    never stops (τ = 0): every cycle pays the rule's checks and drafts d."""
    from collector.decode.speculative import collect_speculative_batch

    stop, tau = ("max_prob", 0.0) if stop_rule else (None, None)
    cfg = replace(ctx.config, draft_k=d, draft_stop=stop, draft_threshold=tau)
    _sync(ctx.device)
    start = time.perf_counter()
    out = collect_speculative_batch(replace(ctx, config=cfg), ids, mask)
    out.valid.cpu()
    return time.perf_counter() - start, max(out.cycles.num_rows if out.cycles is not None else 0, 1)


def speedup_costs(
    ctx: CollectContext, items: Sequence[TaskItem], lengths: tuple[int, ...], stop_rule: bool = False
) -> list[Cost]:
    """The LLM's generate at batch 1 and whole speculative decodes (per timed draft length) of the same
    prompt, back to back, prompt by prompt: each window is a whole sample, as long as what a real run times,
    and load from other work falls on the pair alike. A cycle's cost is (decode − prefill) / cycles, kept
    as its median ratio to the generate time per token, times the median generate time per token. With
    `stop_rule`, also `stop_cycle`: a cycle drafting d under a stop rule's checks (d ≥ 2)."""
    encoded = [_encode(ctx, [it]) for it in items]
    _generate(ctx, *encoded[0])  # warm-up
    prefill = [prefill_seconds(ctx, *e) for e in encoded]
    gen: list[Cost] = []
    timed = [("cycle", d) for d in cycle_lengths(lengths)]
    timed += [("stop_cycle", d) for d in cycle_lengths(lengths) if d > 1 and stop_rule]
    ratios: dict[tuple[str, int], list[float]] = {t: [] for t in timed}
    for _ in range(ROUNDS):
        for it, e, pre in zip(items, encoded, prefill, strict=True):
            g = generate_cost(ctx, [it], 1, warm=False)
            gen.append(g)
            for kind, d in timed:
                seconds, cycles = decode_seconds(ctx, *e, d, kind == "stop_cycle")
                ratios[kind, d].append(max(seconds - pre, 0.0) / cycles / (g.seconds / max(g.tokens, 1)))
    tokens = sum(g.tokens for g in gen[: len(items)])
    mid = statistics.median(g.seconds / max(g.tokens, 1) for g in gen)
    costs = [Cost("llm_generate", tokens, 1, mid * tokens)]
    costs += [Cost(kind, d, 1, mid * statistics.median(r)) for (kind, d), r in ratios.items()]
    return [*costs, Cost("prefill", 0, 1, statistics.mean(prefill))]
