"""The zoo default sweep with the local executor and with `--executor ray`: wall time, ratio, same tokens.

    .venv/bin/python -m bench.bench_sweep [--samples 24] [--max-new-tokens 40] [--num-cpus 2]

Both executors run the cells of the default job (`python -m collector.run` with no arguments) into fresh
warehouses, one torch thread per cell; Ray runs a new local cluster of `--num-cpus` CPUs (one cell per
CPU). Ray's wall time includes starting the cluster and its workers. The two warehouses are then compared
run by run (matched by settings): samples and every token id.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import duckdb
import torch
from rich.console import Console

from collector.sweep import default_cells
from collector.sweeps.local import CellOutcome, run_local
from collector.sweeps.ray_executor import run_ray
from warehouse.migrate import upgrade


def contents(path: Path) -> dict[str, Any]:
    """Each run by its settings: samples and every sample's token ids in order."""
    with duckdb.connect(str(path), read_only=True) as con:
        runs = con.execute("SELECT run_id, settings FROM runs").fetchall()
        out: dict[str, Any] = {}
        for run_id, settings in runs:
            samples = con.execute(
                "SELECT sample_id, output, n_tokens, stop_reason, correct FROM samples WHERE run_id = ? "
                "ORDER BY sample_id",
                [run_id],
            ).fetchall()
            tokens = con.execute(
                "SELECT sample_id, list(token_id ORDER BY step) FROM token_events WHERE run_id = ? "
                "GROUP BY sample_id ORDER BY sample_id",
                [run_id],
            ).fetchall()
            out[json.dumps(json.loads(settings), sort_keys=True)] = (samples, tokens)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--samples", type=int, default=24)
    parser.add_argument("--max-new-tokens", type=int, default=40)
    parser.add_argument("--num-cpus", type=int, default=2)
    parser.add_argument("--ray-first", action="store_true", help="run Ray before local (order bias check)")
    args = parser.parse_args()
    cells = default_cells(args.samples, args.max_new_tokens)
    quiet = Console(quiet=True)
    with tempfile.TemporaryDirectory() as tmp:
        local, ray_path = Path(tmp) / "local.duckdb", Path(tmp) / "ray.duckdb"
        upgrade(local)
        upgrade(ray_path)
        torch.set_num_threads(1)
        timed: dict[str, tuple[float, list[CellOutcome]]] = {}
        for name in ("ray", "local") if args.ray_first else ("local", "ray"):
            start = time.perf_counter()
            if name == "local":
                outcomes = run_local(cells, local, quiet)
            else:
                outcomes = run_ray(cells, ray_path, quiet, num_cpus=args.num_cpus)
            timed[name] = (time.perf_counter() - start, outcomes)
        (t_local, out_local), (t_ray, out_ray) = timed["local"], timed["ray"]
        a, b = contents(local), contents(ray_path)
        events = sum(len(t) for _, tokens in a.values() for _, t in tokens)
    failed = sum(o.action == "failed" for o in (*out_local, *out_ray))
    order = "ray, then local" if args.ray_first else "local, then ray"
    print(f"cells: {len(cells)} ({args.samples} samples, {args.max_new_tokens} new tokens), failed: {failed}")
    print(f"order: {order}")
    print("| executor | wall s | s per cell |\n|---|---:|---:|")
    print(f"| local | {t_local:.1f} | {t_local / len(cells):.2f} |")
    print(f"| ray ({args.num_cpus} CPUs) | {t_ray:.1f} | {t_ray / len(cells):.2f} |")
    per_cell = (t_ray - t_local) / len(cells)
    print(f"ray / local = {t_ray / t_local:.2f}; (ray - local) per cell {per_cell:+.2f} s")
    print(f"runs {len(a)} vs {len(b)}, token events {events}; identical samples and token ids: {a == b}")


if __name__ == "__main__":
    main()
