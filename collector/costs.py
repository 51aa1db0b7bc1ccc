"""A run's measured costs: what a speculative speed-up prediction needs, timed on the run's own device.

At the start of a run (a short calibration on its first prompts): a cached single-token forward of System 1
and of the LLM, an LLM forward over K + 1 tokens, a draft/verify cycle of the speculative loop for each
draft length d (its real per-cycle cost: both models' forwards plus the loop's own work, from whole decodes
of a prompt, each beside the LLM's generate of the same prompt), the prefill of both models per prompt, and
the LLM's own greedy `generate` throughput (the baseline a speed-up is against).
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

from collector.config import RunConfig
from collector.decode.lockstep import Decoder
from collector.methods.base import CollectContext
from collector.modeling import LoadedModel
from collector.tasks.base import TaskItem

ADVISE_K = tuple(range(1, 9))  # draft lengths an oracle run is calibrated for (the advisor's grid)
CALIBRATION_PROMPTS = 4
REPEATS = 3  # timings per figure; the median is kept
STEPS = 4  # forwards (or cycles) per timing


@dataclass(frozen=True)
class Cost:
    """One measured cost (a row of run_costs without its run_id)."""

    kind: str  # s1_forward | s2_forward | cycle | stop_cycle | prefill | llm_generate | decode | baseline
    tokens: int
    batch_size: int
    seconds: float

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
    from collector.engine import encode_batch

    ids, mask, _ = encode_batch(ctx, items)
    return ids, mask


@torch.inference_mode()
def forward_seconds(
    ctx: CollectContext, model: LoadedModel, ids: torch.Tensor, mask: torch.Tensor, n: int
) -> float:
    """Seconds of one cached forward of n new tokens per row after the prompt ids/mask [B, P]."""
    dec = Decoder(model.model, ctx.vocab)
    dec.prefill(ids, mask)
    tokens = ids[:, -1:].expand(ids.shape[0], n)
    return _median_seconds(lambda: dec.feed(tokens), ctx.device)


@torch.inference_mode()
def cycle_seconds(
    ctx: CollectContext, ids: torch.Tensor, mask: torch.Tensor, d: int, repeats: int = REPEATS
) -> float:
    """Seconds of one real draft/verify cycle drafting d tokens and its host check (no stop rule), batch 1,
    the row never finishing."""
    from collector.decode.speculative import SpeculativeBatch

    cfg = replace(ctx.config, draft_k=d, draft_stop=None, draft_threshold=None)
    run = SpeculativeBatch(replace(ctx, config=cfg), ids, mask)
    run.eos = None  # keep every row drafting for the whole timing
    run.T = (d + 1) * (STEPS * (REPEATS + 1) + 1)
    run.buf = type(run.buf)(ids.shape[0], run.T + d + 2, ids.device)

    def cycle_and_check() -> None:  # a lone row is checked after every cycle, as the batch loop does
        run.cycle()
        run.check()

    return _median_seconds(cycle_and_check, ctx.device, repeats=repeats)


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
    return config.calibrate and config.method == "speculative"


def baseline_cost(ctx: CollectContext, items: Sequence[TaskItem]) -> Cost:
    """The LLM's own greedy generate over one batch of the run (once, cold like the decode it is paired
    with): the denominator of the run's measured speed-up."""
    g = generate_cost(ctx, items, len(items), warm=False)
    return Cost("baseline", g.tokens, ctx.config.batch_size, g.seconds)


def draft_lengths(config: RunConfig) -> tuple[int, ...]:
    """Draft lengths a run is calibrated for: 1..K (speculative), the advisor's grid (oracle), else none."""
    if config.method == "speculative":
        return tuple(range(1, config.draft_k + 1))
    return ADVISE_K if config.method == "oracle" and config.router == "always" else ()


def cycle_lengths(lengths: tuple[int, ...]) -> tuple[int, ...]:
    """Draft lengths whose whole cycle is timed (a cycle's cost is near linear in d: the advisor
    interpolates between them): 1, 2, 4, 8, ... up to the longest, and the longest."""
    if not lengths:
        return ()
    top = max(lengths)
    return tuple(sorted({*(2**i for i in range(top.bit_length()) if 2**i <= top), top}))


# Per process, so that a sweep times each pair (and each LLM on each prompt set) once.
_CACHE: dict[tuple[Any, ...], list[Cost]] = {}


def _cached(key: tuple[Any, ...], measure: Callable[[], list[Cost]]) -> list[Cost]:
    if key not in _CACHE:
        _CACHE[key] = measure()
    return _CACHE[key]


def forward_costs(ctx: CollectContext, items: Sequence[TaskItem], lengths: tuple[int, ...]) -> list[Cost]:
    """Single-token forwards at batch 1 and the run's batch size; the LLM's forwards over d + 1 tokens
    at batch 1."""
    costs: list[Cost] = []
    for batch in sorted({1, ctx.config.batch_size}):
        ids, mask = _encode(ctx, (list(items) * batch)[:batch])
        costs.append(Cost("s1_forward", 1, batch, forward_seconds(ctx, ctx.system1, ids, mask, 1)))
        widths = sorted({1, *(d + 1 for d in lengths)}) if batch == 1 else [1]
        costs += [Cost("s2_forward", n, batch, forward_seconds(ctx, ctx.llm, ids, mask, n)) for n in widths]
    return costs


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


def calibrate(ctx: CollectContext, items: Sequence[TaskItem]) -> list[Cost]:
    """The costs of the module docstring on the run's first few prompts (forwards and generate only, at the
    run's batch size, for methods the speculative advisor does not read)."""
    cfg, sample = ctx.config, list(items[:CALIBRATION_PROMPTS])
    lengths = draft_lengths(cfg)
    where = (ctx.llm.path, ctx.system1.path, str(ctx.device), cfg.dtype)
    costs = list(_cached((*where, cfg.batch_size, lengths), lambda: forward_costs(ctx, sample, lengths)))
    prompts = (cfg.max_new_tokens, ctx.stop_strings, tuple(it.prompt for it in sample))
    if lengths:
        stops = cfg.method == "oracle" or cfg.draft_stop is not None  # the advisor replays stop rules
        costs += _cached(
            (*where, "speedup", lengths, stops, *prompts), lambda: speedup_costs(ctx, sample, lengths, stops)
        )
    if cfg.batch_size > 1 or not lengths:
        b = min(cfg.batch_size, len(sample))
        costs += _cached((*where, "generate", b, *prompts), lambda: [generate_cost(ctx, sample, b)])
    return costs
