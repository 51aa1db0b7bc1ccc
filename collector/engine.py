"""The collection loop: batches of prompts through a method, staged as shards, ingested when possible."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pyarrow.compute as pc
import torch
from tqdm import tqdm

from collector.architectures import check_models
from collector.batch import batch_tables
from collector.calibration import OFF, Calibration, calibrate, model_dtype
from collector.config import RunConfig, run_identity
from collector.costs import Cost, baseline_cost, pairs_baseline
from collector.decode import batch_collector
from collector.decode.refill import refill_outputs, refill_rows
from collector.methods.base import BatchOutput, CollectContext
from collector.modeling import LoadedModel, load_model_cached, pick_device, pick_dtype, shared_vocab_size
from collector.prompts import chat_task, left_pad, load_prompts_file, prompt_ids
from collector.tasks.base import Task, TaskItem
from warehouse.db import WarehouseError, WarehouseLocked, check_warehouse_file, open_duckdb
from warehouse.errors import UserError
from warehouse.ingest import IngestReport, ingest_pending
from warehouse.migrate import require_head
from warehouse.settings import staging_dir
from warehouse.staging import RunFinal, RunManifest, StagingWriter, run_lock


def live_cof(mismatches: int, tokens: int) -> float:
    """CoF of what this invocation has collected so far, for the console (the warehouse's CoF of a run is
    the `run_cof` view, which also counts samples of earlier invocations of a resumed run)."""
    return mismatches / tokens if tokens else 0.0


@dataclass(frozen=True)
class RunSummary:
    """What one invocation collected (a resumed run counts only its new samples)."""

    run_key: str
    run_id: int | None
    status: str
    samples: int
    tokens: int
    mismatches: int
    consulted: int
    wall_s: float
    correct: int
    checked: int
    ingested: bool
    calibration: str = "off"  # where the run's costs came from: measured here, reused from run N, off
    calibration_s: float = 0.0  # seconds spent getting them (outside wall_s)

    @property
    def cof(self) -> float:
        """This invocation's CoF (`live_cof`)."""
        return live_cof(self.mismatches, self.tokens)

    @property
    def consult_rate(self) -> float:
        return self.consulted / self.tokens if self.tokens else 0.0

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.wall_s if self.wall_s > 0 else 0.0

    @property
    def accuracy(self) -> float | None:
        return self.correct / self.checked if self.checked else None


def load_task_for(config: RunConfig) -> Task:
    """The run's items: a prompts file or a named dataset."""
    if config.prompts is not None:
        return load_prompts_file(config.prompts, config.samples)
    from collector.tasks import load_task

    assert config.dataset is not None
    return load_task(
        config.dataset, path=config.dataset_path, samples=config.samples, seed=config.seed, shots=config.shots
    )


def build_context(config: RunConfig, task: Task) -> CollectContext:
    """Load the models, check that they share a vocabulary, and set up the router."""
    device = pick_device(config.device)
    dtype = pick_dtype(config.dtype, device)
    place = config.device_map
    llm = load_model_cached(config.llm, device, dtype, place)
    slm = load_model_cached(config.slm, device, dtype, place)
    tuned = load_model_cached(config.slm_tuned, device, dtype, place) if config.slm_tuned else None
    check_models(config, ((m.name, m.model) for m in (llm, slm, tuned) if m is not None))
    check_sizes(config, llm, slm)
    vocab = shared_vocab_size(*(m for m in (llm, slm, tuned) if m is not None))
    generator = torch.Generator(device=device).manual_seed(config.seed)
    from collector.routers import build_router

    router = build_router(config)
    return CollectContext(llm, slm, vocab, config, task.stop_strings, tuned, router, generator)


def check_sizes(config: RunConfig, llm: LoadedModel, slm: LoadedModel) -> None:
    """Refuse a pair whose System 2 is not larger than System 1 by counted parameters (a swapped pair),
    unless asked for; one model alone (a baseline) is no pair."""
    if config.allow_inverted or llm.name == slm.name or llm.params > slm.params:
        return
    raise UserError(
        f"System 2 (--llm {config.llm}) has {llm.params:,} parameters, not more than System 1 "
        f"(--slm {config.slm}) with {slm.params:,}; swap --llm and --slm, or pass --allow-inverted"
    )


def task_and_context(config: RunConfig) -> tuple[Task, CollectContext]:
    """The run's items and loaded models; prompts in the LLM's chat format where `chat_template` says."""
    task = load_task_for(config)
    ctx = build_context(config, task)
    return chat_task(task, ctx.llm.tokenizer, config.chat_template, ctx.llm.name), ctx


def chunks(ids: Sequence[int], size: int) -> Iterator[list[int]]:
    """Consecutive slices of at most `size`."""
    for start in range(0, len(ids), size):
        yield list(ids[start : start + size])


def refuse_missing(warehouse: Path) -> None:
    """Refuse a path that holds no warehouse (missing, or not a DuckDB file), before anything is staged."""
    if not warehouse.exists():
        raise WarehouseError(
            f"no warehouse at {warehouse}; "
            f"create it with: python -m warehouse upgrade --warehouse {warehouse}"
        )
    check_warehouse_file(warehouse)


def check_warehouse(warehouse: Path) -> bool:
    """Refuse a missing or outdated file; True if we can write it now, False if another process holds it."""
    refuse_missing(warehouse)
    try:
        con = open_duckdb(warehouse)
    except WarehouseLocked:
        return False
    try:
        require_head(con, warehouse)
    finally:
        con.close()
    return True


def ingest_now(warehouse: Path, run_key: str) -> tuple[IngestReport | None, int | None]:
    """Ingest staged shards if the file is free; returns the report and this run's id."""
    try:
        con = open_duckdb(warehouse)
    except WarehouseLocked:
        return None, None
    try:
        report = ingest_pending(con, warehouse)
        row = con.execute("SELECT run_id FROM runs WHERE run_key = ?", [run_key]).fetchone()
        return report, None if row is None else int(row[0])
    finally:
        con.close()


def manifest_for(config: RunConfig, ctx: CollectContext, task: Task, run_key: str) -> RunManifest:
    """The run's manifest: settings plus the models as the warehouse records them."""
    models = tuple(m.info() for m in (ctx.llm, ctx.slm, ctx.slm_tuned) if m is not None)
    device, dtype = str(ctx.device), model_dtype(ctx)
    tuned = ctx.slm_tuned.name if ctx.slm_tuned else None
    names = {"llm": ctx.llm.name, "slm": ctx.slm.name, "slm_tuned": tuned}
    resolved = {**names, "device": device, "dtype": dtype}
    identity, setup = run_identity(config.identity_values(**resolved))
    return RunManifest(
        run_key=run_key,
        created_at=datetime.now().isoformat(),
        llm=ctx.llm.name,
        slm=ctx.slm.name,
        slm_tuned=ctx.slm_tuned.name if ctx.slm_tuned else None,
        method=config.method,
        router=config.router,
        threshold=config.threshold,
        dataset=task.name,
        n_samples=len(task.items),
        seed=config.seed,
        temperature=config.temperature,
        top_p=config.top_p,
        device=device,
        dtype=dtype,
        settings=config.settings(),
        models=models,
        experiment=config.experiment,
        identity=identity,
        setup=setup,
    )


@dataclass
class _Tally:
    samples: int = 0
    tokens: int = 0
    mismatches: int = 0
    consulted: int = 0
    correct: int = 0
    checked: int = 0
    decode_s: float = 0.0
    baseline_tokens: int = 0
    baseline_s: float = 0.0  # the LLM's generate on the same batches (speculative runs)
    paired_wall_s: float = 0.0  # wall time of those generates, left out of the run's wall time

    def add(self, other: _Tally) -> None:
        """Count another batch in."""
        for key in vars(self):
            setattr(self, key, getattr(self, key) + getattr(other, key))


def _pair_baseline(ctx: CollectContext, items: list[TaskItem]) -> _Tally:
    """The LLM's own generate over the batch just decoded: the measured speed-up's denominator."""
    start = time.perf_counter()
    cost = baseline_cost(ctx, items)
    return _Tally(
        baseline_tokens=cost.tokens, baseline_s=cost.seconds, paired_wall_s=time.perf_counter() - start
    )


def _cost_rows(calibration: Calibration, tally: _Tally, config: RunConfig) -> list[dict[str, Any]]:
    """The calibration's costs, the run's decode time and, where timed, its paired baseline."""
    rows = [
        *calibration.rows(config.batch_size),
        Cost("decode", tally.tokens, config.batch_size, tally.decode_s),
    ]
    if tally.baseline_tokens:
        rows.append(Cost("baseline", tally.baseline_tokens, config.batch_size, tally.baseline_s))
    return [c.row() for c in rows]


@dataclass(frozen=True)
class Decoded:
    """One batch of a run, decoded: its sample ids, output, prompt token counts and decode seconds."""

    chunk: list[int]
    out: BatchOutput
    valid: list[int]
    prompt_tokens: list[int]
    decode_s: float


def decode_batches(
    ctx: CollectContext, items: Sequence[TaskItem], todo: list[int], collect: Callable[..., BatchOutput]
) -> Iterator[Decoded]:
    """Each batch of `todo` (consecutive, in order) decoded: with refilled rows where the batch loop has a
    refilling twin (`collector.decode.refill`), else in static batches."""
    size = ctx.config.batch_size
    rows = [prompt_ids(ctx, items[i]) for i in todo]
    engine = refill_rows(ctx, collect, rows)
    outs = None if engine is None else refill_outputs(ctx, engine, rows, size)
    for start_row in range(0, len(todo), size):
        chunk, part = todo[start_row : start_row + size], rows[start_row : start_row + size]
        if ctx.generator is not None:  # seeded per batch: a resumed sampled run draws what one run would
            ctx.generator.manual_seed(ctx.config.seed * 1_000_003 + chunk[0])
        start = time.perf_counter()
        if outs is not None:
            out = next(outs)
        else:
            ids, mask = left_pad(part, ctx.llm.tokenizer.pad_token_id, ctx.device)
            out = collect(ctx, ids, mask)
        valid = out.valid.cpu().tolist()  # the batch's one sync: its decode time ends here
        yield Decoded(chunk, out, valid, [len(r) for r in part], time.perf_counter() - start)


def _write_batch(ctx: CollectContext, task: Task, writer: StagingWriter, batch: Decoded) -> _Tally:
    chunk, out = batch.chunk, batch.out
    items = [task.items[i] for i in chunk]
    samples, events = batch_tables(
        out.trace, batch.valid, chunk, items, batch.prompt_tokens, ctx.llm.tokenizer, task, out.extra
    )
    cycles = out.cycles
    if cycles is not None:  # batch-row indices → sample ids; cycles past a row's cut dropped
        from collector.decode.speculative import cycles_for_samples

        cycles = cycles_for_samples(cycles, chunk, samples.column("n_tokens").to_pylist())
    writer.write_batch(chunk[0], samples, events, cycles)
    correct = samples.column("correct")
    return _Tally(
        samples=len(chunk),
        tokens=events.num_rows,
        mismatches=int(pc.sum(events.column("mismatch")).as_py() or 0),
        consulted=int(pc.sum(events.column("consulted")).as_py() or 0),
        correct=int(pc.sum(correct).as_py() or 0),
        checked=len(correct) - correct.null_count,
        decode_s=batch.decode_s,
    )


def stage_batches(
    ctx: CollectContext,
    task: Task,
    writer: StagingWriter,
    todo: list[int],
    collect: Callable[..., BatchOutput],
) -> Iterator[tuple[list[int], _Tally]]:
    """The run's batch loop, shared by the local and the Ray executor: stage each batch of `todo`
    (with the LLM's paired baseline where the run records one); yields (sample ids, the batch's tally)."""
    paired = pairs_baseline(ctx.config)
    for batch in decode_batches(ctx, task.items, todo, collect):
        tally = _write_batch(ctx, task, writer, batch)
        if paired:
            tally.add(_pair_baseline(ctx, [task.items[i] for i in batch.chunk]))
        yield batch.chunk, tally


def run_collection(
    config: RunConfig,
    warehouse: Path,
    *,
    run_key: str | None = None,
    done: frozenset[int] = frozenset(),
    progress: bool = True,
) -> RunSummary:
    """Collect a run (or the rest of one): every finished batch is staged, then ingested when possible."""
    run_key = run_key or uuid.uuid4().hex
    refuse_missing(warehouse)  # before the lock file makes a staging folder beside a wrong path
    with run_lock(staging_dir(warehouse), run_key):
        return collect_locked(config, warehouse, run_key, done, progress)


def collect_locked(
    config: RunConfig, warehouse: Path, run_key: str, done: frozenset[int], progress: bool
) -> RunSummary:
    """`run_collection` for a caller that holds the run's lock."""
    config.validate()
    collect = batch_collector(config)  # refuses bad decoding settings before anything is staged
    writable = check_warehouse(warehouse)
    task, ctx = task_and_context(config)
    todo = [i for i in range(len(task.items)) if i not in done]
    for i in todo:  # a prompt that cannot fit is refused before the run is registered (no `failed` row)
        prompt_ids(ctx, task.items[i])
    writer = StagingWriter(staging_dir(warehouse), run_key)
    writer.write_manifest(manifest_for(config, ctx, task, run_key))
    calibration = OFF
    tally, start = _Tally(), time.perf_counter()
    bar = tqdm(total=len(todo), unit="sample", desc=f"{config.method} {task.name}", disable=not progress)
    try:  # from here on, any failure is recorded: the run ends `failed`, never left looking `running`
        calibration = calibrate(ctx, [task.items[i] for i in todo] or task.items, warehouse, run_key)
        start = time.perf_counter()  # the run's wall time excludes the calibration, as before
        for chunk, part in stage_batches(ctx, task, writer, todo, collect):
            tally.add(part)
            bar.update(len(chunk))
            bar.set_postfix(
                tok_s=f"{tally.tokens / (time.perf_counter() - start):.0f}",
                cof=f"{live_cof(tally.mismatches, tally.tokens):.3f}",
            )
            if writable:
                ingest_now(warehouse, run_key)
    except BaseException as exc:
        wall = time.perf_counter() - start - tally.paired_wall_s
        rows = _cost_rows(calibration, tally, config)
        writer.write_final(
            RunFinal(
                "failed", datetime.now().isoformat(), wall, tally.tokens / max(wall, 1e-9), repr(exc), rows
            )
        )
        ingest_now(warehouse, run_key)
        raise
    finally:
        bar.close()
    wall = time.perf_counter() - start - tally.paired_wall_s  # without the paired baseline
    rows = _cost_rows(calibration, tally, config)
    writer.write_final(
        RunFinal("complete", datetime.now().isoformat(), wall, tally.tokens / max(wall, 1e-9), costs=rows)
    )
    report, run_id = ingest_now(warehouse, run_key)
    return RunSummary(
        run_key,
        run_id,
        "complete",
        tally.samples,
        tally.tokens,
        tally.mismatches,
        tally.consulted,
        wall,
        tally.correct,
        tally.checked,
        ingested=report is not None,
        calibration=calibration.describe(),
        calibration_s=calibration.seconds,
    )
