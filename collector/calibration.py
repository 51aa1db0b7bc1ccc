"""Calibration once: a pair's costs are measured once per (LLM, System 1, device, dtype) and reused.

A run first looks for costs it can reuse in the warehouse (the newest run of the same pair, device and
dtype whose own calibration measured every cost this run needs), then, where another process holds the
file, among those this process measured for it (a sweep's earlier cell). Only when neither has them, or
with `--recalibrate`, does it time them (`collector.costs`): at batch 1 the figures a latency prediction
divides (whole decodes beside the LLM's generate), and at each batch size of BATCH_SIZES that memory
allows the draft/verify cycle and the LLM's generate step. Each cost row records where it came from
(`measured_by`: the run_key of the run that measured it; NULL: this run), and each run records the
seconds it spent getting them (`calibration`).
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
    BATCH_SIZES,
    CALIBRATION_KINDS,
    CALIBRATION_PROMPTS,
    Cost,
    batch_costs,
    cycle_free_costs,
    cycle_lengths,
    draft_lengths,
    forward_costs,
    speedup_costs,
)
from collector.methods.base import CollectContext
from collector.tasks.base import TaskItem
from warehouse.db import WarehouseError, WarehouseLocked, duckdb_connection

PairKey = tuple[str, str, str, str]  # (LLM, System 1, device, dtype) as the runs table records them


@dataclass(frozen=True)
class Calibration:
    """A run's calibration costs and where they came from."""

    costs: tuple[Cost, ...]
    source: str  # measured | reused | off
    measured_by: str | None = None  # run_key of the run that measured them (reused)
    measured_run_id: int | None = None  # its run id, where the warehouse knew it
    seconds: float = 0.0  # spent by this run getting them (timing or looking up)

    def describe(self) -> str:
        """`measured here`, `reused from run N`, or `off`."""
        if self.source != "reused":
            return {"measured": "measured here"}.get(self.source, self.source)
        who = self.measured_run_id if self.measured_run_id is not None else (self.measured_by or "?")[:12]
        return f"reused from run {who}"

    def rows(self, batch_size: int) -> list[Cost]:
        """The costs as this run records them (provenance set) and the seconds it spent on them."""
        own = [replace(c, measured_by=self.measured_by) for c in self.costs]
        return [*own, Cost("calibration", 0, batch_size, self.seconds)] if self.source != "off" else own


OFF = Calibration((), "off")


def calibrates(config: RunConfig) -> bool:
    """Whether a run takes a calibration: on, and a pair (a model alone is a baseline, not a pair)."""
    return config.calibrate and config.llm != config.slm


def pair_key(ctx: CollectContext) -> PairKey:
    """The calibration's key: the models' names, the device and the weights' dtype, as in `runs`."""
    return ctx.llm.name, ctx.system1.name, str(ctx.device), model_dtype(ctx)


def model_dtype(ctx: CollectContext) -> str:
    """The LLM's weight dtype as the warehouse records it (`float32`)."""
    return str(next(ctx.llm.model.parameters()).dtype).removeprefix("torch.")


def needed(config: RunConfig, cycles: bool = True) -> set[tuple[str, int, int]]:
    """(kind, tokens, batch size) a run needs from a calibration: every timed draft length at batch 1
    (`cycles`: the pair can run speculative cycles), with and without a stop rule's checks, the prefill and
    the LLM's generate."""
    lengths = cycle_lengths(draft_lengths(config)) if cycles else ()
    need = {("cycle", d, 1) for d in lengths} | {("stop_cycle", d, 1) for d in lengths if d > 1}
    return need | {("prefill", 0, 1), ("llm_generate", 0, 1)}


def covers(costs: Sequence[Cost], need: set[tuple[str, int, int]]) -> bool:
    """Whether `costs` hold everything in `need` (llm_generate and prefill: any token count)."""
    have = {(c.kind, 0 if c.kind in ("llm_generate", "prefill") else c.tokens, c.batch_size) for c in costs}
    return need <= have


# Per process and warehouse: a sweep's cells reuse a pair's costs even while another process (the API
# server) holds the file; the run_key it records names a run of that warehouse.
_MEASURED: dict[tuple[Path | None, PairKey], tuple[tuple[Cost, ...], str]] = {}


def _from_warehouse(warehouse: Path, key: PairKey, need: set[tuple[str, int, int]]) -> Calibration | None:
    """The newest calibration of the pair the warehouse holds that covers `need` (None: none, or busy)."""
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
        return None
    by_run: dict[tuple[int, str], list[Cost]] = {}
    for run_id, run_key, kind, tokens, batch, seconds in rows:
        by_run.setdefault((int(run_id), str(run_key)), []).append(Cost(kind, tokens, batch, seconds))
    for (run_id, run_key), costs in by_run.items():  # newest first
        if covers(costs, need):
            return Calibration(tuple(costs), "reused", run_key, run_id)
    return None


def measure(ctx: CollectContext, items: Sequence[TaskItem], cycles: bool = True) -> tuple[Cost, ...]:
    """Time the pair's costs on the first few prompts: the batch-1 figures of a latency prediction, then
    the cycle and generate step at each batch size of BATCH_SIZES that memory allows. Without `cycles` (a
    recurrent model: no speculative decoding), the forwards, the prefill and the LLM's generate only."""
    sample = list(items[:CALIBRATION_PROMPTS])
    if not cycles:
        return tuple(cycle_free_costs(ctx, sample))
    lengths = draft_lengths(ctx.config)
    costs = forward_costs(ctx, sample, lengths) + speedup_costs(ctx, sample, lengths, stop_rule=True)
    for batch in BATCH_SIZES[1:]:
        try:
            costs += batch_costs(ctx, sample, batch, max(lengths))
        except torch.OutOfMemoryError:
            if ctx.device.type == "cuda":
                torch.cuda.empty_cache()
            break  # larger batches would not fit either
    return tuple(costs)


def calibrate(
    ctx: CollectContext, items: Sequence[TaskItem], warehouse: Path | None, run_key: str
) -> Calibration:
    """The run's calibration: reused where this process or the warehouse has the pair's costs (unless
    `recalibrate`), else measured here (and remembered for this process's later runs)."""
    if not calibrates(ctx.config):
        return OFF
    start = time.perf_counter()
    cycles = can_speculate((m.name, m.model) for m in (ctx.llm, ctx.system1))
    key, need = (warehouse, pair_key(ctx)), needed(ctx.config, cycles)
    found: Calibration | None = None
    if not ctx.config.recalibrate:
        found = _from_warehouse(warehouse, key[1], need) if warehouse is not None else None
        mine = _MEASURED.get(key)
        if found is None and mine is not None and covers(mine[0], need):
            found = Calibration(mine[0], "reused", mine[1])
    if found is None:
        costs = measure(ctx, items, cycles)
        _MEASURED[key] = (costs, run_key)
        found = Calibration(costs, "measured")
    return replace(found, seconds=time.perf_counter() - start)
