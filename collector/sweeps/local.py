"""The local executor: cell after cell in this process; complete cells skipped, partial ones resumed."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

from collector.config import RunConfig
from collector.engine import RunSummary, run_collection
from warehouse.db import WarehouseError, WarehouseLocked, duckdb_connection
from warehouse.errors import UserError

ACTIONS = ("ran", "resumed", "skipped", "failed")


@dataclass(frozen=True)
class CellOutcome:
    """What happened to one cell of a sweep."""

    config: RunConfig
    action: str  # ran | resumed | skipped | failed
    summary: RunSummary | None = None
    error: str | None = None


def existing_runs(warehouse: Path) -> dict[RunConfig, tuple[int, str]]:
    """The warehouse's runs by their configuration (the latest one wins); empty if the file is busy."""
    if not warehouse.exists():
        return {}
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
    except WarehouseError:
        raise  # every cell would fail alike: the sweep stops with the message
    except UserError as exc:  # this cell's own problem (its data, its models): the sweep carries on
        return CellOutcome(config, "failed", error=str(exc))


LABELLED = ("method", "router", "threshold", "dataset", "prompts")  # in the label's own words


def label(c: RunConfig) -> str:
    """A cell in one line: the pair, method, router, data and every other defining setting changed."""
    router = c.router if c.threshold is None else f"{c.router}<{c.threshold}>"
    rest = " ".join(f"{k}={v}" for k, v in c.changed_settings().items() if k not in LABELLED)
    return f"{c.llm} + {c.slm} {c.method}/{router} {c.dataset or c.prompts}" + (f" {rest}" if rest else "")


def outcome_line(i: int, n: int, out: CellOutcome, seconds: float | None = None) -> str:
    """The line printed when a cell ends (with `seconds`: the cell's wall, loading and calibration in)."""
    s = out.summary
    detail = f"CoF {s.cof:.3f}, {s.tokens} tokens, {s.tokens_per_s:.0f} tok/s" if s else (out.error or "")
    if s and s.calibration_s > 0:
        detail += f", calibration {s.calibration_s:.0f} s ({s.calibration})"
    wall = f"{seconds:6.1f} s " if seconds is not None else ""
    return f"[{i:>3}/{n}] {wall}{out.action:<8} {label(out.config)}  {detail}"


def print_totals(outcomes: Sequence[CellOutcome], wall_s: float, console: Console) -> None:
    """The sweep's last line: how many cells ran, resumed, were skipped and failed."""
    counts = {a: sum(o.action == a for o in outcomes) for a in ACTIONS}
    console.print(
        f"sweep done in {wall_s:.0f} s: " + ", ".join(f"{n} {a}" for a, n in counts.items()), highlight=False
    )


def run_local(cells: Sequence[RunConfig], warehouse: Path, console: Console) -> list[CellOutcome]:
    """Every cell in order, one line each as it finishes."""
    seen = existing_runs(warehouse)
    outcomes: list[CellOutcome] = []
    start = time.perf_counter()
    for i, cell in enumerate(cells, 1):
        began = time.perf_counter()
        out = run_cell(cell, warehouse, seen)
        outcomes.append(out)
        line = outcome_line(i, len(cells), out, time.perf_counter() - began)
        console.print(line, highlight=False, markup=False, soft_wrap=True)
    print_totals(outcomes, time.perf_counter() - start, console)
    return outcomes
