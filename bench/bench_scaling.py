"""Time the scaling answers' own computation in-process: what /v1/scaling and /v1/scaling/predict run.

    python bench/bench_scaling.py --warehouse /tmp/bench/synth_10000000.duckdb
    python bench/bench_scaling.py --warehouse W --repeat 41 --bootstrap 100 --method oracle --dataset gsm8k
    PYTHONPATH=/path/to/an/older/checkout python bench/bench_scaling.py --warehouse W   # the same calls there

The cases are the functions both routes call (the pairs, every fit of `/v1/scaling` with its leave-one-out
and setup labels, and `predict_cof` at R = 10), each run once and then `--repeat` times, interleaved so the
machine's load falls on every case alike; the table gives the median and best wall milliseconds. Run it
with PYTHONPATH set to another checkout (the calls exist there too) to compare two versions on one file.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import duckdb

from analytics.scaling import pair_points, predict_cof
from api.routes.scaling import _fits


def cases(
    con: duckdb.DuckDBPyConnection, method: str, dataset: str, bootstrap: int
) -> dict[str, Callable[[], Any]]:
    """Every timed call, by name."""
    return {
        "pair_points": lambda: pair_points(con, method=method, dataset=dataset),
        f"/v1/scaling's computation (bootstrap={bootstrap})": lambda: _fits(
            con, method, dataset, "always", bootstrap, 0, None
        ),
        f"predict_cof(ratio=10, bootstrap={bootstrap})": lambda: predict_cof(
            con, method=method, dataset=dataset, ratio=10.0, bootstrap=bootstrap, confidence=0.95
        ),
    }


def main(argv: list[str] | None = None) -> int:
    """Entry point; prints a Markdown table and returns the exit status."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--warehouse", type=Path, required=True, help="a warehouse (bench/gen_synthetic.py)")
    parser.add_argument("--repeat", type=int, default=21, help="timed calls per case (default 21)")
    parser.add_argument("--bootstrap", type=int, default=100, help="resamples, as the benchmark's URLs")
    parser.add_argument("--method", default="oracle")
    parser.add_argument("--dataset", default="gsm8k")
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error("--repeat must be 1 or more")
    if not args.warehouse.exists():
        parser.error(f"no warehouse at {args.warehouse}; make one with bench/gen_synthetic.py")
    con = duckdb.connect(str(args.warehouse), read_only=True)
    cur = con.cursor()
    timed = cases(cur, args.method, args.dataset, args.bootstrap)
    seconds: dict[str, list[float]] = {name: [] for name in timed}
    for call in timed.values():
        call()  # once untimed: the file's blocks, imports
    for _ in range(args.repeat):
        for name, call in timed.items():
            start = time.perf_counter()
            call()
            seconds[name].append(time.perf_counter() - start)
    print("| case | median ms | best ms |\n|---|---|---|")
    for name, s in seconds.items():
        print(f"| {name} | {statistics.median(s) * 1e3:.1f} | {min(s) * 1e3:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
