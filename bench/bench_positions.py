"""What `/v1/positions` computes, timed in one process: this tree's `positions()` (decile profile and early
share from summary rows) against the same answers computed another way, in blocks (A B B A, a warm-up call
per block: one version's scans leave the caches cold for the other).

    python -m bench.bench_positions --warehouse W.duckdb                    # against the events scan
    python -m bench.bench_positions --warehouse W.duckdb --before 59cb12a   # against a revision's module

`--before REV` loads `analytics/positions.py` as it was at REV (git show) and times its `position_profile`
and `early_share` (main before issue 23's summary rows: a scan of the token events and a 1,000-resample
bootstrap); without it, the same answers with the windows counted from `token_events` (`from_events`).
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

from analytics import positions as now
from analytics.source import open_warehouse

Case = tuple[str, tuple[str, ...], dict[str, Any]]


def _module_at(rev: str) -> ModuleType:
    """analytics/positions.py as it was at `rev`, imported under another name."""
    text = subprocess.run(
        ["git", "show", f"{rev}:analytics/positions.py"], check=True, capture_output=True, text=True
    ).stdout
    path = Path(tempfile.mkdtemp()) / "positions_before.py"
    path.write_text(text)
    spec = importlib.util.spec_from_file_location("positions_before", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _median_ms(f: Callable[[], object], calls: int) -> float:
    f()  # warm-up
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        f()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def _versions(
    cur: Any, old: ModuleType | None, cols: tuple[str, ...], k: int | None, filters: dict[str, Any] | None
) -> tuple[Callable[[], object], Callable[[], object]]:
    """This tree's `positions()`, and what it is timed against."""

    def new() -> object:
        return now.positions(cur, cols, k=k, filters=filters)

    def other() -> object:
        if old is None:
            early = now.early_share(cur, cols, k=k, filters=filters, from_events=True)
            return now.position_profile(cur, cols, filters=filters), early
        return old.position_profile(cur, cols, filters=filters), old.early_share(
            cur, cols, k=k, filters=filters
        )

    return new, other


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--warehouse", required=True, help="a warehouse at head (opened read-only)")
    parser.add_argument("--before", help="git revision whose analytics/positions.py to time against")
    parser.add_argument("--calls", type=int, default=5, help="timed calls per block (default 5)")
    args = parser.parse_args(argv)
    con = open_warehouse(args.warehouse)
    cur = con.cursor()
    run = int(cur.sql("SELECT min(run_id) FROM runs").fetchall()[0][0])
    cases: list[Case] = [
        ("group_by=method (fraction 0.1)", ("method",), {}),
        (f"run_id={run}, k=10", ("run_id",), {"k": 10, "filters": {"run_id": run}}),
    ]
    old = _module_at(args.before) if args.before else None
    for name, cols, kw in cases:
        new, other = _versions(cur, old, cols, kw.get("k"), kw.get("filters"))
        blocks = [("other", other), ("new", new), ("new", new), ("other", other)]
        got: dict[str, list[float]] = {"other": [], "new": []}
        for label, f in blocks:
            got[label].append(_median_ms(f, args.calls))
        o, n = statistics.mean(got["other"]), statistics.mean(got["new"])
        label = f"at {args.before}" if args.before else "windows from the events"
        print(f"{name}: {label} {o:.1f} ms, summary rows {n:.1f} ms ({o / n:.1f}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
