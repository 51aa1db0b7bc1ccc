"""Calibration once: a pair's costs are measured once per (LLM, System 1, device, dtype, batch size), reused.

A run needs its pair's costs at batch 1 (the figures a latency prediction divides: whole decodes beside
the LLM's generate) and at its own batch size (the draft/verify cycle and the LLM's generate step), no
other (`collector.costs.calibration_batch_sizes`). For each of those batch sizes it first looks for costs
it can reuse in the warehouse (the newest run of the same pair, device and dtype whose own calibration
measured every cost needed there), then, where another process holds the file, among those this process
measured for it (a sweep's earlier cell). Only the batch sizes neither has, or all with `--recalibrate`,
are timed (`collector.costs`). Each cost row records where it came from (`measured_by`: the run_key of the
run that measured it; NULL: this run), and each run records the seconds it spent getting them
(`calibration`).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from collector.architectures import can_speculate
from collector.config import RunConfig
from collector.costs import (
    Cost,
    batch_costs,
    calibration_batch_sizes,
    cycle_free_costs,
    cycle_lengths,
    draft_lengths,
    speedup_costs,
)
from collector.methods.base import CollectContext
from collector.tasks.base import TaskItem
from warehouse.db import WarehouseError, WarehouseLocked, duckdb_connection
from warehouse.vocabulary import CALIBRATION_KINDS

PairKey = tuple[str, str, str, str]  # (LLM, System 1, device, dtype) as the runs table records them
Need = set[tuple[str, int, int]]  # (kind, tokens, batch size) a calibration must hold


@dataclass(frozen=True)
class Part:
    """A run's costs at one batch size and where they came from."""

    batch_size: int
    costs: tuple[Cost, ...]  # reused ones carry `measured_by`: the run_key of the run that measured them
    origin: str | None = None  # "run N" (or a run_key's prefix) they were reused from; None: measured here


@dataclass(frozen=True)
class Calibration:
    """A run's calibration costs, per batch size, and the seconds it spent getting them."""

    parts: tuple[Part, ...]
    seconds: float = 0.0  # spent by this run getting them (timing or looking up)
    on: bool = True

    @property
    def costs(self) -> tuple[Cost, ...]:
        return tuple(c for part in self.parts for c in part.costs)

    def describe(self) -> str:
        """`measured here`, `reused from run N`, both with their batch sizes, or `off`."""
        if not self.on:
            return "off"
        by_origin: dict[str | None, list[int]] = {}
        for part in self.parts:
            by_origin.setdefault(part.origin, []).append(part.batch_size)
        if len(by_origin) <= 1:
            origin = next(iter(by_origin), None)
            return "measured here" if origin is None else f"reused from {origin}"
        return ", ".join(
            ("measured here" if origin is None else f"reused from {origin}")
            + f" at batch {', '.join(map(str, sizes))}"
            for origin, sizes in by_origin.items()
        )

    def rows(self, batch_size: int) -> list[Cost]:
        """The costs as this run records them (provenance set) and the seconds it spent on them."""
        return [*self.costs, Cost("calibration", 0, batch_size, self.seconds)] if self.on else []


OFF = Calibration((), on=False)


def calibrates(config: RunConfig) -> bool:
    """Whether a run takes a calibration: on, and a pair (a model alone is a baseline, not a pair)."""
    return config.calibrate and config.llm != config.slm


def pair_key(ctx: CollectContext) -> PairKey:
    """The calibration's key: the models' names, the device and the weights' dtype, as in `runs`."""
    return ctx.llm.name, ctx.system1.name, str(ctx.device), model_dtype(ctx)


def model_dtype(ctx: CollectContext) -> str:
    """The LLM's weight dtype as the warehouse records it (`float32`)."""
    return str(next(ctx.llm.model.parameters()).dtype).removeprefix("torch.")


def needed_by_batch_size(config: RunConfig, cycles: bool = True) -> dict[int, Need]:
    """What a run needs from a calibration, per batch size. At batch 1: every timed draft length
    (`cycles`: the pair can run speculative cycles), with and without a stop rule's checks, the prefill and
    the LLM's generate. At the run's own batch size b > 1: a cycle drafting 1 and the longest timed
    length, and the LLM's generate (a pair without cycles needs batch 1 only)."""
    lengths = cycle_lengths(draft_lengths(config)) if cycles else ()
    need = {("cycle", d, 1) for d in lengths} | {("stop_cycle", d, 1) for d in lengths if d > 1}
    out = {1: need | {("prefill", 0, 1), ("llm_generate", 0, 1)}}
    for b in calibration_batch_sizes(config) if cycles else ():
        if b > 1:
            out[b] = {("cycle", 1, b), ("cycle", max(lengths), b), ("llm_generate", 0, b)}
    return out


def needed(config: RunConfig, cycles: bool = True) -> Need:
    """(kind, tokens, batch size) a run needs from a calibration, every batch size together."""
    return set().union(*needed_by_batch_size(config, cycles).values())


def covers(costs: Sequence[Cost], need: Need) -> bool:
    """Whether `costs` hold everything in `need` (llm_generate and prefill: any token count)."""
    have = {(c.kind, 0 if c.kind in ("llm_generate", "prefill") else c.tokens, c.batch_size) for c in costs}
    return need <= have


# Per process and warehouse: a sweep's cells reuse a pair's costs even while another process (the API
# server) holds the file; the run_key of the run that measured them names a run of that warehouse.
_MEASURED: dict[tuple[Path | None, PairKey], list[tuple[tuple[Cost, ...], str]]] = {}

Measured = list[tuple[str, tuple[Cost, ...]]]  # (origin, costs) of earlier calibrations, newest first


def _from_warehouse(warehouse: Path, key: PairKey) -> Measured:
    """Every calibration of the pair the warehouse holds, newest first (none where the file is busy)."""
    llm, system1, device, dtype = key
    sql = f"""SELECT r.run_id, r.run_key, c.kind, c.tokens, c.batch_size, c.seconds
              FROM run_costs c JOIN runs r ON r.run_id = c.run_id
              WHERE c.measured_by IS NULL AND c.kind IN ({", ".join("?" for _ in CALIBRATION_KINDS)})
                AND r.llm = ? AND (CASE WHEN r.method = 'proxy' THEN r.slm_tuned ELSE r.slm END) = ?
                AND r.device = ? AND r.dtype = ?
              ORDER BY r.run_id DESC"""
    try:
        with duckdb_connection(warehouse, read_only=True) as con:
            rows = con.execute(sql, [*CALIBRATION_KINDS, llm, system1, device, dtype]).fetchall()
    except (WarehouseLocked, WarehouseError):
        return []
    by_run: dict[tuple[int, str], list[Cost]] = {}
    for run_id, run_key, kind, tokens, batch, seconds in rows:
        by_run.setdefault((int(run_id), str(run_key)), []).append(Cost(kind, tokens, batch, seconds, run_key))
    return [(f"run {run_id}", tuple(costs)) for (run_id, _), costs in by_run.items()]


def _reusable(known: Measured, batch: int, need: Need) -> Part | None:
    """The newest known costs at `batch` that cover `need` there, as a reused part."""
    for origin, costs in known:
        mine = tuple(c for c in costs if c.batch_size == batch)
        if covers(mine, need):
            return Part(batch, mine, origin)
    return None


def measure(
    ctx: CollectContext, items: Sequence[TaskItem], batch_sizes: Sequence[int], cycles: bool = True
) -> tuple[Cost, ...]:
    """Time the pair's costs on the run's first `calibration_prompts` prompts at `batch_sizes`: at 1, the
    figures of a latency prediction; at a larger size, the cycle and generate step, where memory allows.
    Without `cycles` (a recurrent model: no speculative decoding), the prefill and the LLM's generate."""
    sample = list(items[: ctx.config.calibration_prompts])
    if not cycles:
        return tuple(cycle_free_costs(ctx, sample))
    lengths = draft_lengths(ctx.config)
    costs = []
    if 1 in batch_sizes:
        costs = speedup_costs(ctx, sample, lengths, stop_rule=True)
    for batch in sorted(b for b in batch_sizes if b > 1):
        try:
            costs += batch_costs(ctx, sample, batch, max(lengths))
        except torch.OutOfMemoryError:  # no costs at this size: the advisor says so, it invents none
            if ctx.device.type == "cuda":
                torch.cuda.empty_cache()
            break  # larger batches would not fit either
    return tuple(costs)


def calibrate(
    ctx: CollectContext, items: Sequence[TaskItem], warehouse: Path | None, run_key: str
) -> Calibration:
    """The run's calibration: at each batch size it needs, reused where this process or the warehouse has
    the pair's costs there (unless `recalibrate`), else measured here (and remembered for this process's
    later runs)."""
    if not calibrates(ctx.config):
        return OFF
    start = time.perf_counter()
    cycles = can_speculate((m.name, m.model) for m in (ctx.llm, ctx.system1))
    key = (warehouse, pair_key(ctx))
    need = needed_by_batch_size(ctx.config, cycles)
    parts: dict[int, Part] = {}
    if not ctx.config.recalibrate:
        known = _from_warehouse(warehouse, key[1]) if warehouse is not None else []
        known += [(f"run {k[:12]}", tuple(replace(c, measured_by=k) for c in costs))
                  for costs, k in reversed(_MEASURED.get(key, []))]  # fmt: skip
        parts = {b: p for b, n in need.items() if (p := _reusable(known, b, n)) is not None}
    missing = [b for b in need if b not in parts]
    if missing:
        costs = measure(ctx, items, missing, cycles)
        _MEASURED.setdefault(key, []).append((costs, run_key))
        for b in missing:
            if mine := tuple(c for c in costs if c.batch_size == b):  # none: it did not fit in memory
                parts[b] = Part(b, mine)
    ordered = tuple(parts[b] for b in sorted(parts))
    return Calibration(ordered, seconds=time.perf_counter() - start)
