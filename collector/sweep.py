"""`python -m collector.sweep CONFIG`: a grid of pairs × methods × routers × datasets × settings, resumable.

CONFIG is a TOML file, or the name of a sweep shipped with fsgen (`paper`: the paper's own grid; `real`: a
real pretrained model, shipped as GGUF, with drafts built from it). A cell
whose run is complete in the warehouse is skipped; one that stopped part-way is resumed. Cells run here
one after another (`--executor local`) or as tasks on a Ray cluster (`--executor ray`).
The default job (`python -m collector.run` with no arguments) is the sweep of `default_cells()`.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
import tomllib
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console
from rich.table import Table

from collector.config import RunConfig
from collector.run import print_error
from collector.sweeps import shipped_sweeps, sweep_path
from collector.sweeps.local import CellOutcome, run_local
from collector.sweeps.spec import DEFAULT_DATASETS, SweepError, SweepPlan, expand, plan
from warehouse.db import WarehouseLocked
from warehouse.errors import UserError
from warehouse.settings import add_warehouse_argument, command_parser, positive_int, resolve_warehouse

__all__ = ["default_cells", "expand", "main", "run_default_job", "run_sweep"]

# The default job: every zoo pair, every method, the built-in tasks, a few dozen samples each.
DEFAULT_SAMPLES = (
    24  # as many as keep `time make run` on a fresh clone under 5 minutes on two cores (32: 5:47)
)
DEFAULT_MAX_NEW_TOKENS = 40
DEFAULT_CALIBRATION_PROMPTS = 2  # each pair's batch-1 costs from 2 prompts (4 took a fifth of the job)

EXAMPLE = """example CONFIG.toml (any run setting may be set sweep-wide or in an entry; numbers may be lists):
  pairs = [["zoo:zoo-l", "zoo:zoo-xs"], ["zoo:zoo-m", "zoo:zoo-xs"]]   # or pairs = "zoo"
  # family = ["./qwen-0.5b", "./qwen-1.8b", "./qwen-4b"]          # every larger × smaller pair
  methods = ["oracle", {method = "contrastive", lam = [0.5, 1.5]}, "speculative"]
  routers = [{router = "always"}, {router = "entropy", threshold = [1.0, 1.5, 2.0]}]
  samples = 32
  max_new_tokens = 64
  experiment = "tau-grid"                                         # default: the file's stem
  [[datasets]]
  name = "gsm8k"
  path = "data/gsm8k/test.jsonl"
  shots = 8
  [[datasets]]
  name = "builtin:arith"
  [tuned]                                                         # tuned SLM per SLM, for proxy
  "zoo:zoo-xs" = "zoo:zoo-xs-tuned"

examples:
  python -m collector.sweep sweep.toml --dry-run
  python -m collector.sweep sweep.toml --warehouse runs.duckdb
  python -m collector.sweep paper --dry-run                       # the paper's grid (no weights needed)
  python -m collector.sweep real --warehouse real.duckdb          # SmolLM2-135M-Instruct and its drafts
  python -m collector.sweep sweep.toml --executor ray --address HEAD_IP:6379
"""


def default_cells(
    samples: int = DEFAULT_SAMPLES, max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS
) -> list[RunConfig]:
    """The default job: all zoo pairs × all methods × built-in tasks, plus every zoo model alone."""
    from collector.zoo import zoo_models

    cells = expand(
        {
            "pairs": "zoo",
            "samples": samples,
            "max_new_tokens": max_new_tokens,
            "calibration_prompts": DEFAULT_CALIBRATION_PROMPTS,
        }
    )
    # System 1 alone (router `never`) gives the SLM-alone accuracy of every model.
    for dataset in DEFAULT_DATASETS:
        for m in zoo_models():
            name = f"zoo:{m.name}"
            cells.append(
                RunConfig(
                    llm=name,
                    slm=name,
                    method="oracle",
                    router="never",
                    dataset=dataset,
                    samples=samples,
                    max_new_tokens=max_new_tokens,
                )
            )
    return cells


def run_sweep(cells: list[RunConfig], warehouse: Path, console: Console) -> list[CellOutcome]:
    """Every cell in this process, in order (the local executor)."""
    return run_local(cells, warehouse, console)


def print_headline(warehouse: Path, console: Console, beside: bool = False) -> None:
    """The headline's findings in a screenful (analytics), printed at the end of a sweep; with `beside`,
    also the four findings beside the paper's and the zoo's, and the speculative advisor's pick."""
    from analytics.summary import format_compact_headline, headline  # the entry point may use analytics

    more = (
        "Full tables (intervals, accuracies, runner-up laws, why a law is unidentified): "
        f"python -m analytics --warehouse {warehouse}"
        f"\nFigures and report.md: python -m analytics.report --warehouse {warehouse} --out report/"
    )
    try:
        summary = headline(warehouse)
        console.print(format_compact_headline(summary, more), highlight=False, markup=False, soft_wrap=True)
        if beside:
            from analytics.beside import format_beside

            console.print(
                "\n" + format_beside(summary, warehouse), highlight=False, markup=False, soft_wrap=True
            )
    except WarehouseLocked:
        console.print("(the warehouse is busy; see the headline later with: python -m analytics.report)")


def run_default_job(
    warehouse: Path,
    console: Console,
    samples: int = DEFAULT_SAMPLES,
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
) -> int:
    """`python -m collector.run` with no arguments: the zoo sweep, then the headline table."""
    if not warehouse.exists():
        from warehouse.migrate import upgrade

        upgrade(warehouse)
        console.print(f"created {warehouse} at the newest schema")
    cells = default_cells(samples, max_new_tokens)
    console.print(f"default job: {len(cells)} runs (zoo pairs × methods × built-in tasks) into {warehouse}")
    outcomes = run_sweep(cells, warehouse, console)
    print_headline(warehouse, console)
    return 1 if any(o.action == "failed" for o in outcomes) else 0


def human_bytes(n: float) -> str:
    """Bytes in the largest unit that keeps a number ≥ 1."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024:
            return f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


SHOWN = ("llm", "slm", "method", "router", "threshold", "dataset")  # columns of their own in --dry-run


def cell_table(sweep: SweepPlan) -> Table:
    """The cells as a table: models, method, router, dataset, every other setting not at its default."""
    from collector.sweeps.sizes import weight_bytes

    defaults = {f.name: f.default for f in dataclasses.fields(RunConfig)}
    table = Table(title=f"{len(sweep.cells)} cells", title_justify="left")
    for col in ("#", *SHOWN, "settings", "weights (GPU)"):
        table.add_column(col, overflow="fold")
    for i, c in enumerate(sweep.cells, 1):
        values = dataclasses.asdict(c)
        rest = " ".join(f"{k}={v}" for k, v in values.items() if k not in SHOWN and v != defaults[k])
        table.add_row(
            str(i),
            *("" if values[k] is None else str(values[k]) for k in SHOWN),
            rest,
            human_bytes(weight_bytes(c)),
        )
    return table


def model_table(sweep: SweepPlan) -> Table:
    """Each model of the grid: parameters counted from its config, its weights per dtype, where the
    config came from (the model's folder, or the one fsgen ships for a model not on disk)."""
    from collector.sweeps.sizes import cell_models, config_source, count_params

    table = Table(title="models", title_justify="left")
    for col in ("model", "parameters", "bf16 weights", "config"):
        table.add_column(col, overflow="fold")
    for model in dict.fromkeys(m for c in sweep.cells for m in cell_models(c)):
        path, shipped = config_source(model)
        n = count_params(model)
        source = f"shipped with fsgen ({path}); weights not on disk" if shipped else path
        table.add_row(model, f"{n:,}", human_bytes(2 * n), source)
    return table


def build_parser() -> argparse.ArgumentParser:
    """The CLI's argument parser."""
    p = command_parser("python -m collector.sweep", __doc__, EXAMPLE)
    p.add_argument("config", help=f"sweep file (TOML), or a shipped sweep: {', '.join(shipped_sweeps())}")
    add_warehouse_argument(p)
    p.add_argument("--dry-run", action="store_true", help="print the cells as a table and stop")
    p.add_argument("--executor", choices=("local", "ray"), default="local", help="where the cells run")
    p.add_argument("--address", help="Ray cluster to join (default: $RAY_ADDRESS, else a new local one)")
    p.add_argument("--max-retries", type=int, default=3, help="Ray: retries of a cell whose worker died")
    p.add_argument(
        "--threads", type=positive_int, default=1, help="torch threads per cell (Ray: CPUs per cell)"
    )
    p.add_argument(
        "--num-cpus", type=positive_int, help="Ray: CPUs of a new local cluster (default: every core)"
    )
    p.add_argument("--device-map", help="auto: place each model over a machine's GPUs (every cell)")
    return p


def load_plan(ref: str, device_map: str | None) -> SweepPlan:
    """The cells of a sweep file or shipped sweep; raises SweepError on anything wrong with it."""
    path = sweep_path(ref)
    try:
        spec = tomllib.loads(path.read_text())
    except OSError as exc:
        shipped = ", ".join(shipped_sweeps())
        raise SweepError(
            f"cannot read sweep {ref}: {exc}; give a TOML file or a shipped sweep ({shipped})"
        ) from exc
    except tomllib.TOMLDecodeError as exc:
        raise SweepError(f"{path} is not valid TOML: {exc}") from exc
    if device_map:
        spec = {**spec, "device_map": device_map}
    spec.setdefault("experiment", path.stem)  # a sweep is an experiment, named after its file by default
    return plan(spec)


def execute(args: argparse.Namespace, cells: Sequence[RunConfig], console: Console) -> list[CellOutcome]:
    """Run the cells with the chosen executor (a missing warehouse file is created at head first)."""
    warehouse = resolve_warehouse(args.warehouse)
    if not warehouse.exists():  # as `collector.run` does; a file behind head is still refused
        from warehouse.migrate import upgrade

        upgrade(warehouse)
        console.print(f"created {warehouse} at the newest schema", highlight=False)
    if args.executor == "ray":
        from collector.sweeps.ray_executor import run_ray

        return run_ray(cells, warehouse, console, address=args.address, max_retries=args.max_retries,
                       threads=args.threads, num_cpus=args.num_cpus)  # fmt: skip
    import torch

    torch.set_num_threads(args.threads)
    return run_local(cells, warehouse, console)


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status (1 if any cell failed, 2 for a bad sweep)."""
    args = build_parser().parse_args(argv)
    console = Console(soft_wrap=True)  # a path or a command in a line stays copyable
    if not console.is_terminal:
        console.width = 200  # a table piped to a file or a log keeps one line per cell
    try:
        sweep = load_plan(args.config, args.device_map)
        for note in sweep.left_out:
            console.print(f"left out: {note}", highlight=False, markup=False)
        if args.dry_run:
            console.print(cell_table(sweep))
            console.print(model_table(sweep))
            return 0
        start = time.perf_counter()
        outcomes = execute(args, sweep.cells, console)
    except UserError as exc:  # a bad sweep file, a missing model, the warehouse: said, not a traceback
        print_error(console, exc)
        return 2
    console.print(f"{args.executor} executor: {time.perf_counter() - start:.1f} s wall", highlight=False)
    print_headline(resolve_warehouse(args.warehouse), console, beside=True)
    return 1 if any(o.action == "failed" for o in outcomes) else 0


if __name__ == "__main__":
    sys.exit(main())
