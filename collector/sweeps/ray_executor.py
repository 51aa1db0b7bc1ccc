"""`--executor ray`: each cell a Ray task; its batches come back to the driver, which stages and ingests.

No filesystem is shared: a cell is a Ray streaming-generator task (`cell_stream`) that loads the models on
its worker and yields the run's manifest, then each finished batch as Arrow IPC bytes through Ray's object
store, then the run's end. The driver writes them through the same `StagingWriter` and ingester as a local
run, so a half-finished cell resumes exactly like a local one. A worker killed mid-cell is retried by Ray
(`max_retries`); the retried task recomputes the same batches (the same chunks, seeded per batch), Ray
drops the items it already delivered, and the driver drops any batch whose samples it has staged, so the
run ends identical and without duplicate events.
"""

from __future__ import annotations

import math
import os
import socket
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import torch
from rich.console import Console

from collector.calibration import calibrate
from collector.config import RunConfig
from collector.engine import (
    RunSummary,
    _cost_rows,
    _Tally,
    manifest_for,
    stage_batches,
    task_and_context,
)
from collector.sweeps.local import CellOutcome, existing_runs, label, outcome_line, print_totals
from collector.sweeps.sizes import weight_bytes
from collector.sweeps.spec import SweepError
from warehouse.db import WarehouseError
from warehouse.errors import UserError
from warehouse.settings import staging_dir
from warehouse.staging import MANIFEST, RunFinal, RunManifest, StagingWriter

# A cell asks for its weights plus a fifth (KV cache, activations) against one GPU's memory.
HEADROOM = 1.2
DEFAULT_MAX_RETRIES = 3


@dataclass(frozen=True)
class CellEvent:
    """Something the driver learned about a cell: started, batch, done or failed (pid: the worker's)."""

    index: int
    kind: str
    pid: int | None = None


def to_ipc(table: pa.Table) -> bytes:
    """A table as Arrow IPC stream bytes (what travels through the object store)."""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return bytes(sink.getvalue().to_pybytes())


def from_ipc(data: bytes) -> pa.Table:
    """The table of `to_ipc` bytes."""
    return pa.ipc.open_stream(pa.py_buffer(data)).read_all()


class _BatchCapture(StagingWriter):
    """Stands in for the staging writer on a worker: it keeps the batch's tables to send to the driver."""

    def __init__(self) -> None:  # no staging folder on a worker
        self.tables: dict[str, bytes] = {}

    def write_batch(
        self, first_sample_id: int, samples: pa.Table, events: pa.Table, cycles: pa.Table | None = None
    ) -> Path:
        self.tables = {"samples": to_ipc(samples), "events": to_ipc(events)}
        if cycles is not None:
            self.tables["cycles"] = to_ipc(cycles)
        return Path(f"batch-{first_sample_id:08d}")


def cell_stream(settings: dict[str, Any], run_key: str, done: list[int], threads: int) -> Iterator[Any]:
    """The Ray task of one cell (runs on a worker): yields the manifest, each batch, then the end."""
    torch.set_num_threads(threads)
    from collector.decode import batch_collector

    config = RunConfig.from_settings(settings)
    config.validate()
    collect = batch_collector(config)
    task, ctx = task_and_context(config)
    pid = os.getpid()
    manifest = asdict(manifest_for(config, ctx, task, run_key))
    yield "started", {"pid": pid, "host": socket.gethostname(), "manifest": manifest}
    skip = set(done)
    todo = [i for i in range(len(task.items)) if i not in skip]  # the chunks a local run (or resume) makes
    # the run's measured forward costs, as run_collection records them (wall time excludes calibration)
    # (a worker may not see the warehouse: it reuses what its own process measured, else measures)
    calibration = calibrate(ctx, [task.items[i] for i in todo] or task.items, None, run_key)
    tally, start = _Tally(), time.perf_counter()
    capture = _BatchCapture()
    for chunk, part in stage_batches(ctx, task, capture, todo, collect):  # the local executor's loop
        tally.add(part)
        yield "batch", {"pid": pid, "ids": chunk, "tables": capture.tables, "tally": asdict(part)}
    wall = time.perf_counter() - start - tally.paired_wall_s  # as run_collection: without the baseline
    rows = _cost_rows(calibration, tally, config)
    yield "final", {"pid": pid, "wall_s": wall, "tokens_per_s": tally.tokens / max(wall, 1e-9), "costs": rows}


def gpus_for(config: RunConfig, gpu_bytes: int | None) -> float:
    """GPUs a cell asks Ray for: 0 on a CPU cluster, else its weights (plus headroom) over one GPU."""
    if gpu_bytes is None or (config.device or "cuda").startswith("cpu"):
        return 0
    need = math.ceil(weight_bytes(config) * HEADROOM / gpu_bytes)
    if need > 1 and not config.device_map:
        raise UserError(
            f"{label(config)} needs {need} GPUs ({weight_bytes(config) / 2**30:.1f} GiB of weights, "
            f'{gpu_bytes / 2**30:.0f} GiB per GPU): set device_map = "auto" to place it over them'
        )
    return max(need, 1)


def gpu_memory() -> int | None:
    """Memory of one GPU of the cluster, as a Ray GPU worker reports it; None on a CPU cluster."""
    import ray

    if ray.cluster_resources().get("GPU", 0) < 1:
        return None

    def probe() -> int:
        return int(torch.cuda.get_device_properties(0).total_memory)

    return int(ray.get(ray.remote(num_gpus=1)(probe).remote()))


@dataclass
class _Cell:
    """The driver's state of one submitted cell."""

    index: int
    config: RunConfig
    action: str
    run_key: str
    writer: StagingWriter
    staged: set[int]
    state: str = "queued"
    tally: _Tally = field(default_factory=_Tally)
    duplicates: int = 0


class RayDriver:
    """Submits the cells, stages and ingests what comes back, and prints progress."""

    def __init__(self, warehouse: Path, console: Console, observer: Callable[[CellEvent], None] | None):
        from collector.engine import check_warehouse

        self.warehouse, self.console, self.observer = warehouse, console, observer
        self.writable = check_warehouse(warehouse)
        self.outcomes: dict[int, CellOutcome] = {}
        self.cells: dict[Any, _Cell] = {}
        self.total = 0

    def submit(self, cells: Sequence[RunConfig], max_retries: int, threads: int) -> None:
        """One Ray task per cell that is not complete yet."""
        import ray

        from collector.resume import resume_point

        remote = ray.remote(cell_stream)
        seen, gpu_bytes, self.total = existing_runs(self.warehouse), gpu_memory(), len(cells)
        for i, config in enumerate(cells, 1):
            prior = seen.get(config)
            try:
                if prior and prior[1] == "complete":
                    self.outcomes[i] = CellOutcome(config, "skipped")
                    continue
                run_key, staged = uuid.uuid4().hex, set()
                if prior:  # partial: continue after its committed samples, under its own key
                    run_key, _, done = resume_point(str(prior[0]), self.warehouse)
                    staged = set(done)
                gpus = gpus_for(config, gpu_bytes)
            except WarehouseError:
                raise  # every cell would fail alike: the sweep stops with the message
            except UserError as exc:
                self.outcomes[i] = CellOutcome(config, "failed", error=str(exc))
                continue
            gen = remote.options(
                num_cpus=threads,
                num_gpus=gpus,
                max_retries=max_retries,
                _generator_backpressure_num_objects=2,
            ).remote(config.settings(), run_key, sorted(staged), threads)
            writer = StagingWriter(staging_dir(self.warehouse), run_key)
            self.cells[gen] = _Cell(i, config, "resumed" if prior else "ran", run_key, writer, staged)
        self.progress()

    def progress(self, cell: _Cell | None = None) -> None:
        """One live line: cells queued / running / done / failed."""
        states = [c.state for c in self.cells.values()]
        done = sum(o.action != "failed" for o in self.outcomes.values())
        failed = sum(o.action == "failed" for o in self.outcomes.values())
        now = f"  {cell.state}: {label(cell.config)}" if cell and cell.state == "running" else ""
        self.console.print(
            f"[ray] {states.count('queued')} queued · {states.count('running')} running · {done} done · "
            f"{failed} failed{now}",
            highlight=False,
            markup=False,
            soft_wrap=True,
        )

    def notify(self, cell: _Cell, kind: str, pid: int | None = None) -> None:
        if self.observer is not None:
            self.observer(CellEvent(cell.index, kind, pid))

    def on_item(self, cell: _Cell, kind: str, payload: dict[str, Any]) -> None:
        """Stage what a worker sent: the manifest, a batch (unless already staged), or the run's end."""
        if kind == "started":
            cell.writer.write_manifest(RunManifest.from_json(dict(payload["manifest"])))
            cell.state = "running"
            self.progress(cell)
        elif kind == "batch":
            ids = [int(i) for i in payload["ids"]]
            if cell.staged.intersection(ids):  # a retried task re-sent a batch we have
                cell.duplicates += 1
                return
            tables = {k: from_ipc(v) for k, v in payload["tables"].items()}
            cell.writer.write_batch(ids[0], tables["samples"], tables["events"], tables.get("cycles"))
            cell.staged.update(ids)
            for key, value in payload["tally"].items():
                setattr(cell.tally, key, getattr(cell.tally, key) + value)
            self.ingest(cell)
        elif kind == "final":
            now, wall, tps = datetime.now().isoformat(), payload["wall_s"], payload["tokens_per_s"]
            final = RunFinal("complete", now, wall, tps, costs=list(payload["costs"]))
            cell.writer.write_final(final)
            self.finish(cell, final)
        self.notify(cell, kind, payload.get("pid"))

    def ingest(self, cell: _Cell) -> tuple[bool, int | None]:
        """Ingest the staged shards when the warehouse is ours; (ingested, the run's id)."""
        from collector.engine import ingest_now

        if not self.writable:
            return False, None
        report, run_id = ingest_now(self.warehouse, cell.run_key)
        return report is not None, run_id

    def finish(self, cell: _Cell, final: RunFinal) -> None:
        ingested, run_id = self.ingest(cell)
        t = cell.tally
        summary = RunSummary(
            cell.run_key, run_id, "complete", t.samples, t.tokens, t.mismatches, t.consulted,
            final.wall_s, t.correct, t.checked, ingested,
        )  # fmt: skip
        self.end(cell, CellOutcome(cell.config, cell.action, summary))

    def fail(self, cell: _Cell, exc: BaseException) -> None:
        """A cell whose task raised or ran out of retries: recorded failed, like a local run."""
        cause = getattr(exc, "cause", None)
        message = str(cause) if isinstance(cause, UserError) else f"{type(exc).__name__}: {exc}"
        if (cell.writer.run_dir / MANIFEST).exists():
            cell.writer.write_final(RunFinal("failed", datetime.now().isoformat(), 0.0, 0.0, message))
            self.ingest(cell)
        self.end(cell, CellOutcome(cell.config, "failed", error=message.strip().splitlines()[-1]))
        self.notify(cell, "failed")

    def end(self, cell: _Cell, outcome: CellOutcome) -> None:
        cell.state = "ended"
        self.outcomes[cell.index] = outcome
        line = outcome_line(cell.index, self.total, outcome)
        self.console.print(line, highlight=False, markup=False, soft_wrap=True)
        self.progress()

    def cancel(self) -> None:
        """Cancel every cell still in flight (its worker stays up for the next sweep)."""
        import ray

        for gen, cell in self.cells.items():
            if cell.state != "ended":
                ray.cancel(gen)

    def drain(self) -> None:
        """Take what the workers send until every cell has ended."""
        import ray
        from ray.exceptions import RayError

        active = dict(self.cells)
        while active:
            ready: list[Any] = ray.wait(list(active), num_returns=1, timeout=5.0)[0]
            for gen in ready:
                cell = active[gen]
                try:
                    kind, payload = ray.get(next(gen))
                except StopIteration:
                    del active[gen]
                    if cell.state != "ended":
                        self.fail(cell, RuntimeError("the cell's task ended without its final batch"))
                    continue
                except RayError as exc:
                    del active[gen]
                    self.fail(cell, exc)
                    continue
                self.on_item(cell, kind, payload)


def run_ray(
    cells: Sequence[RunConfig],
    warehouse: Path,
    console: Console,
    *,
    address: str | None = None,
    max_retries: int = DEFAULT_MAX_RETRIES,
    threads: int = 1,
    num_cpus: int | None = None,
    observer: Callable[[CellEvent], None] | None = None,
) -> list[CellOutcome]:
    """Every cell as a Ray task on the cluster at `address` (or $RAY_ADDRESS, or a new local one).

    `num_cpus` sizes a new local cluster (default: every core); `observer` hears every cell event.
    """
    try:
        import ray
    except ImportError as exc:
        raise SweepError("--executor ray needs Ray: pip install 'fsgen[ray]'") from exc
    started_here = not ray.is_initialized()
    if started_here:  # a new local cluster unless an address (or $RAY_ADDRESS) names one
        joining = address or os.environ.get("RAY_ADDRESS")
        local: dict[str, Any] = {"include_dashboard": False, "num_cpus": num_cpus}
        ray.init(address=address, **({} if joining else local))
    start = time.perf_counter()
    driver = RayDriver(warehouse, console, observer)
    try:
        driver.submit(cells, max_retries, threads)
        driver.drain()
    except BaseException:  # Ctrl-C or a bug on the driver: stop the cells; what is staged resumes later
        driver.cancel()
        raise
    finally:
        if started_here:
            ray.shutdown()
    outcomes = [driver.outcomes[i] for i in sorted(driver.outcomes)]
    print_totals(outcomes, time.perf_counter() - start, console)
    return outcomes
