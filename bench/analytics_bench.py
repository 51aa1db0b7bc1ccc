"""Time the analytics on a large warehouse (make one with bench/gen_synthetic.py) against DESIGN.md §7.

The profiles (positions, uncertainty) and the CoF views read the summary tables written at ingest; the
target for the profiles is 100 ms at 100M events (DESIGN §7, "from summary tables").

    python bench/gen_synthetic.py --out /tmp/fsgen_synth.duckdb
    python bench/analytics_bench.py --warehouse /tmp/fsgen_synth.duckdb --repeat 5

Each case runs once cold (first touch of the file's blocks) and then `--repeat` times; the table gives the
cold time, the median and the best wall time of the repeats, the median process CPU time (all DuckDB
threads; on a shared machine CPU s / threads estimates the wall time the query would take on idle cores),
and the process's peak resident memory at the end (DuckDB runs in-process, so its buffers count).
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import duckdb

from analytics.frequency import collaboration_frequency
from analytics.positions import early_share, position_profile
from analytics.routers import replay_all
from analytics.scaling import fit_pairs, fit_scaling_law, pair_points
from analytics.source import open_warehouse, query
from analytics.speculative import acceptance_by_position, speculative_runs
from analytics.summary import headline
from analytics.uncertainty import entropy_histogram, mismatch_by_entropy_bin, mismatch_predictors

PAIR = ["llm", "slm", "method", "dataset"]
PROFILE_S = 0.1  # analytics profiles on 100M events, from summary tables


@dataclass(frozen=True)
class Case:
    """One timed call and the design target it answers to (None: no target, for information)."""

    name: str
    target_s: float | None
    call: Callable[[], Any]


@dataclass(frozen=True)
class Timing:
    """Seconds for one case."""

    case: Case
    cold: float
    median: float
    best: float
    cpu: float
    rows: int


def cases(con: duckdb.DuckDBPyConnection, bootstrap: int) -> list[Case]:
    """Everything timed, in order."""
    points = pair_points(con, method="oracle", dataset="gsm8k")
    run_id = int(query(con, "SELECT min(run_id) AS r FROM runs WHERE router = 'always'")["r"][0])
    return [
        Case("per-run CoF: SELECT * FROM run_cof", 1.0, lambda: query(con, "SELECT * FROM run_cof")),
        Case("per-pair CoF: SELECT * FROM pair_cof", 1.0, lambda: query(con, "SELECT * FROM pair_cof")),
        Case(
            "collaboration_frequency(run_id), t intervals over samples",
            1.0,
            lambda: collaboration_frequency(con),
        ),
        Case(
            "collaboration_frequency(llm, slm, method, dataset)",
            1.0,
            lambda: collaboration_frequency(con, PAIR),
        ),
        Case(
            "position profile: SELECT * FROM position_profile",
            PROFILE_S,
            lambda: query(con, "SELECT * FROM position_profile"),
        ),
        Case("positions.position_profile(run_id)", PROFILE_S, lambda: position_profile(con)),
        Case(
            "positions.position_profile(llm, slm, method, dataset)",
            PROFILE_S,
            lambda: position_profile(con, PAIR),
        ),
        Case(
            "positions.early_share(run_id, first 16 tokens)",
            PROFILE_S,
            lambda: early_share(con, k=16),
        ),
        Case(
            "entropy profile: SELECT * FROM entropy_profile",
            PROFILE_S,
            lambda: query(con, "SELECT * FROM entropy_profile"),
        ),
        Case(
            "uncertainty.mismatch_by_entropy_bin(method)",
            PROFILE_S,
            lambda: mismatch_by_entropy_bin(con, ["method"]),
        ),
        Case(
            "uncertainty.mismatch_by_entropy_bin(run_id)",
            PROFILE_S,
            lambda: mismatch_by_entropy_bin(con),
        ),
        Case(
            f"fit_scaling_law, {points.height} pairs, {bootstrap} bootstrap resamples",
            2.0,
            lambda: fit_scaling_law(points["param_ratio"], points["cof"], bootstrap=bootstrap),
        ),
        Case(
            f"fit_pairs (reads pair_cof) + {bootstrap} resamples",
            None,
            lambda: fit_pairs(con, method="oracle", dataset="gsm8k", bootstrap=bootstrap),
        ),
        Case(
            "mismatch_predictors(run_id): AUROC/Spearman/r_pb x 3 predictors",
            None,
            lambda: mismatch_predictors(con),
        ),
        Case(
            "mismatch_predictors(method, entropy only)",
            None,
            lambda: mismatch_predictors(con, ["method"], predictors=["entropy"]),
        ),
        Case(
            f"mismatch_predictors(run {run_id} only), 3 predictors (what /v1/uncertainty?run_id= asks)",
            None,
            lambda: mismatch_predictors(con, filters={"run_id": run_id}),
        ),
        Case(
            f"collaboration_frequency(run {run_id} only)",
            None,
            lambda: collaboration_frequency(con, filters={"run_id": run_id}),
        ),
        Case(
            "entropy_histogram(method), matched vs mismatched",
            None,
            lambda: entropy_histogram(con, ["method"]),
        ),
        Case("early_share(method, first 10%) + binomial tests", None, lambda: early_share(con, ["method"])),
        Case(
            f"router replay_all(run {run_id}), 3 routers x ~50 thresholds",
            None,
            lambda: replay_all(con, run_id),
        ),
        Case(
            "speculative_runs + acceptance_by_position",
            None,
            lambda: (speculative_runs(con), acceptance_by_position(con)),
        ),
        Case("summary.headline (what the collector prints)", None, lambda: headline(con)),
    ]


def rows_of(result: Any) -> int:
    """Row count of a frame (or of the first frame of a tuple), 1 for anything else."""
    if isinstance(result, tuple):
        return rows_of(result[0])
    return int(getattr(result, "height", 1))


def measure(case: Case, repeat: int) -> Timing:
    """Run a case cold once, then `repeat` times; cpu = median process CPU seconds (all threads)."""
    started = time.perf_counter()
    result = case.call()
    cold = time.perf_counter() - started
    walls, cpus = [], []
    for _ in range(repeat):
        started, cpu_started = time.perf_counter(), time.process_time()
        case.call()
        walls.append(time.perf_counter() - started)
        cpus.append(time.process_time() - cpu_started)
    return Timing(case, cold, statistics.median(walls), min(walls), statistics.median(cpus), rows_of(result))


def markdown(timings: list[Timing]) -> str:
    """The results table."""
    lines = [
        "| case | target | cold s | median s | best s | CPU s | rows | ok |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for t in timings:
        target = f"< {t.case.target_s * 1000:g} ms" if t.case.target_s else "–"
        ok = "–" if t.case.target_s is None else ("yes" if t.median < t.case.target_s else "**no**")
        times = f"{t.cold:.3f} | {t.median:.3f} | {t.best:.3f} | {t.cpu:.2f}"
        lines.append(f"| {t.case.name} | {target} | {times} | {t.rows:,} | {ok} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Time every case and print a markdown table."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--warehouse", default="/tmp/fsgen_synth.duckdb")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--bootstrap", type=int, default=1000)
    parser.add_argument("--only", help="run only cases whose name contains this text")
    args = parser.parse_args(argv)
    con = open_warehouse(args.warehouse)
    events = query(con, "SELECT count(*) AS n FROM token_events")["n"][0]
    runs = query(con, "SELECT count(*) AS n FROM runs")["n"][0]
    threads = query(con, "SELECT current_setting('threads') AS t")["t"][0]
    print(
        f"warehouse {args.warehouse}: {events:,} token events, {runs} runs; DuckDB threads {threads}",
        file=sys.stderr,
    )
    timings = []
    for case in cases(con, args.bootstrap):
        if args.only and args.only not in case.name:
            continue
        timings.append(measure(case, args.repeat))
        t = timings[-1]
        print(f"  {t.median:7.3f} s  {case.name}", file=sys.stderr, flush=True)
    con.close()
    peak_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # ru_maxrss is KiB on Linux
    print(markdown(timings))
    print(f"\npeak resident memory: {peak_gib:.2f} GiB (target < 8 GiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
