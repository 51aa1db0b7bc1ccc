"""Calibration once: the same run twice on a fresh warehouse, each a whole `python -m collector.run` process.

The first run times the pair's costs (batch 1, and 4, 16, 64); the second copies them from the warehouse.
Printed per run: the process's wall time, the seconds the run spent on its calibration (the `calibration`
row of run_costs: timing, or looking up) and that share of the process's wall time.

    python -m bench.bench_calibration [--llm zoo:zoo-l] [--slm zoo:zoo-xs] [--samples 16] [--threads 1]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import duckdb


def run_once(args: argparse.Namespace, warehouse: Path) -> float:
    """Wall seconds of one whole collector process."""
    cmd = [sys.executable, "-m", "collector.run", "--llm", args.llm, "--slm", args.slm,
           "--dataset", args.dataset, "--samples", str(args.samples), "--threads", str(args.threads),
           "--quiet", "--warehouse", str(warehouse)]  # fmt: skip
    start = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    wall = time.perf_counter() - start
    print(next(line for line in out.splitlines() if line.startswith("calibration:")))
    return wall


def main(argv: list[str] | None = None) -> int:
    """Run the bench; prints a Markdown table."""
    p = argparse.ArgumentParser(prog="python -m bench.bench_calibration", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--llm", default="zoo:zoo-l")
    p.add_argument("--slm", default="zoo:zoo-xs")
    p.add_argument("--dataset", default="builtin:arith")
    p.add_argument("--samples", type=int, default=16)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        warehouse = Path(tmp) / "w.duckdb"
        walls = [run_once(args, warehouse) for _ in range(2)]
        with duckdb.connect(str(warehouse), read_only=True) as con:
            calib = dict(
                con.execute("SELECT run_id, seconds FROM run_costs WHERE kind = 'calibration'").fetchall()
            )
            decode = dict(con.execute("SELECT run_id, wall_s FROM runs").fetchall())
    print("\n| run | process wall (s) | calibration (s) | share of wall | run's decode wall (s) |")
    print("|---:|---:|---:|---:|---:|")
    for run_id, wall in enumerate(walls, 1):
        c = calib[run_id]
        print(f"| {run_id} | {wall:.1f} | {c:.2f} | {c / wall:.1%} | {decode[run_id]:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
