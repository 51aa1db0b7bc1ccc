"""`python -m collector.sweep CONFIG.toml`: a grid of pairs × methods × routers × datasets, resumable.

A cell whose run is complete in the warehouse is skipped; one that stopped part-way is resumed.
The default job (`python -m collector.run` with no arguments) is the sweep of `default_cells()`.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console

from collector.config import METHODS, RunConfig
from collector.engine import RunSummary, run_collection
from collector.modeling import ModelLoadError
from warehouse.db import WarehouseError, WarehouseLocked, duckdb_connection
from warehouse.settings import resolve_warehouse

# The default job: every zoo pair, every method, the built-in tasks, a few dozen samples each.
DEFAULT_DATASETS = ("builtin:arith", "builtin:choice", "builtin:code")
DEFAULT_SAMPLES = 48
DEFAULT_MAX_NEW_TOKENS = 40

EXAMPLE = """example CONFIG.toml:
  pairs = [["zoo:zoo-l", "zoo:zoo-xs"], ["zoo:zoo-m", "zoo:zoo-xs"]]   # or pairs = "zoo" for every zoo pair
  methods = ["oracle", "contrastive", "speculative"]
  routers = [{router = "always"}, {router = "entropy", threshold = 1.5}]
  datasets = ["builtin:arith", "builtin:choice"]
  samples = 32
  max_new_tokens = 64
  [tuned]                                                         # tuned SLM per SLM, for proxy
  "zoo:zoo-xs" = "zoo:zoo-xs-tuned"

examples:
  python -m collector.sweep sweep.toml
  python -m collector.sweep sweep.toml --warehouse runs.duckdb --dry-run
"""


@dataclass(frozen=True)
class CellOutcome:
    """What happened to one cell of a sweep."""

    config: RunConfig
    action: str  # ran | resumed | skipped | failed
    summary: RunSummary | None = None
    error: str | None = None


def zoo_grid(methods: tuple[str, ...] = METHODS) -> tuple[list[tuple[str, str]], dict[str, str]]:
    """Every zoo pair (LLM larger than SLM) and the tuned variant of each SLM that has one."""
    from collector.zoo import TUNED_FOR, zoo_pairs

    pairs = [(f"zoo:{llm}", f"zoo:{slm}") for llm, slm in zoo_pairs()]
    tuned = {f"zoo:{base}": f"zoo:{t}" for base, t in TUNED_FOR.items()}
    return pairs, tuned


def expand(spec: dict[str, Any]) -> list[RunConfig]:
    """The cells of a sweep description (the parsed TOML)."""
    pairs_spec = spec.get("pairs", "zoo")
    tuned: dict[str, str] = dict(spec.get("tuned", {}))
    if pairs_spec == "zoo":
        pairs, zoo_tuned = zoo_grid()
        tuned = {**zoo_tuned, **tuned}
    else:
        pairs = [(str(p[0]), str(p[1])) for p in pairs_spec]
    routers = spec.get("routers", [{"router": "always"}])
    shared = {
        k: spec[k]
        for k in (
            "samples",
            "max_new_tokens",
            "batch_size",
            "seed",
            "shots",
            "draft_k",
            "temperature",
            "top_p",
            "device",
            "dtype",
        )
        if k in spec
    }
    cells = []
    for dataset in spec.get("datasets", list(DEFAULT_DATASETS)):
        for llm, slm in pairs:
            for method in spec.get("methods", list(METHODS)):
                if method == "proxy" and slm not in tuned:
                    continue
                for r in routers:
                    if method == "speculative" and r.get("router", "always") != "always":
                        continue  # the LLM verifies every draft: routers do not apply
                    cells.append(
                        RunConfig(
                            llm=llm,
                            slm=slm,
                            method=method,
                            dataset=dataset,
                            slm_tuned=tuned.get(slm) if method == "proxy" else None,
                            **r,
                            **shared,
                        )
                    )
    return cells


def default_cells(
    samples: int = DEFAULT_SAMPLES, max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS
) -> list[RunConfig]:
    """The default job: all zoo pairs × all methods × built-in tasks, plus every zoo model alone."""
    from collector.zoo import zoo_models

    spec = {"pairs": "zoo", "samples": samples, "max_new_tokens": max_new_tokens}
    cells = expand(spec)
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


def existing_runs(warehouse: Path) -> dict[RunConfig, tuple[int, str]]:
    """The warehouse's runs by their configuration (the latest one wins); empty if the file is busy."""
    try:
        with duckdb_connection(warehouse, read_only=True) as con:
            rows = con.execute("SELECT run_id, status, settings FROM runs ORDER BY run_id").fetchall()
    except WarehouseLocked:
        return {}
    return {RunConfig.from_settings(json.loads(s)): (int(i), str(st)) for i, st, s in rows}


def run_cell(config: RunConfig, warehouse: Path, seen: dict[RunConfig, tuple[int, str]]) -> CellOutcome:
    """Run, resume or skip one cell; a failing cell is reported, not fatal to the sweep."""
    prior = seen.get(config)
    try:
        if prior and prior[1] == "complete":
            return CellOutcome(config, "skipped")
        if prior:
            from collector.resume import resume_run

            _, summary = resume_run(str(prior[0]), warehouse, progress=False)
            return CellOutcome(config, "resumed", summary)
        return CellOutcome(config, "ran", run_collection(config, warehouse, progress=False))
    except (ModelLoadError, ValueError, FileNotFoundError, NotImplementedError) as exc:
        return CellOutcome(config, "failed", error=str(exc))


def _label(c: RunConfig) -> str:
    router = c.router if c.threshold is None else f"{c.router}<{c.threshold}>"
    return f"{c.llm} + {c.slm} {c.method}/{router} {c.dataset}"


def run_sweep(cells: list[RunConfig], warehouse: Path, console: Console) -> list[CellOutcome]:
    """Every cell in order, one line each as it finishes."""
    seen = existing_runs(warehouse)
    outcomes: list[CellOutcome] = []
    start = time.perf_counter()
    for i, cell in enumerate(cells, 1):
        out = run_cell(cell, warehouse, seen)
        outcomes.append(out)
        s = out.summary
        detail = f"CoF {s.cof:.3f}, {s.tokens} tokens, {s.tokens_per_s:.0f} tok/s" if s else (out.error or "")
        console.print(
            f"[{i:>3}/{len(cells)}] {out.action:<8} {_label(cell)}  {detail}", highlight=False, soft_wrap=True
        )
    counts = {a: sum(o.action == a for o in outcomes) for a in ("ran", "resumed", "skipped", "failed")}
    console.print(
        f"sweep done in {time.perf_counter() - start:.0f} s: "
        + ", ".join(f"{n} {a}" for a, n in counts.items()),
        highlight=False,
    )
    return outcomes


def print_headline(warehouse: Path, console: Console) -> None:
    """The headline table of the warehouse (analytics), printed at the end of a sweep."""
    from analytics.summary import format_headline, headline  # the entry point may use analytics

    try:
        console.print(format_headline(headline(warehouse)), highlight=False, markup=False, soft_wrap=True)
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


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m collector.sweep",
        description=__doc__,
        epilog=EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("config", type=Path, help="sweep description (TOML)")
    parser.add_argument("--warehouse", help="DuckDB file (default: $FSGEN_WAREHOUSE or ./fsgen.duckdb)")
    parser.add_argument("--dry-run", action="store_true", help="list the cells and stop")
    args = parser.parse_args(argv)
    console = Console()
    try:
        cells = expand(tomllib.loads(args.config.read_text()))
    except (OSError, tomllib.TOMLDecodeError, TypeError, KeyError) as exc:
        console.print(f"[red]error:[/red] cannot read sweep {args.config}: {exc}")
        return 2
    try:
        for cell in cells:
            cell.validate()
    except ValueError as exc:
        console.print(f"[red]error:[/red] sweep {args.config} has an invalid cell: {exc}")
        return 2
    if args.dry_run:
        for cell in cells:
            console.print(_label(cell), highlight=False)
        return 0
    warehouse = resolve_warehouse(args.warehouse)
    try:
        outcomes = run_sweep(cells, warehouse, console)
    except WarehouseError as exc:
        console.print(f"[red]error:[/red] {exc}")
        return 2
    print_headline(warehouse, console)
    return 1 if any(o.action == "failed" for o in outcomes) else 0


if __name__ == "__main__":
    sys.exit(main())
