"""Each route's own cost, in one process: wall and CPU milliseconds per request, cache off.

    python -m bench.bench_routes_cpu --warehouse W                      # every route of bench_api
    python -m bench.bench_routes_cpu --warehouse W --routes speculative uncertainty --requests 41

The app answers through httpx.ASGITransport with its thread-pool hops called in place, so a request's
whole cost (routing, dependencies, queries, response building) runs on this thread and the process CPU
time (DuckDB's own threads included) is measured beside the wall time. On a machine shared with other
work the CPU time moves far less than the wall time: compare two trees by it, alternating runs.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import fastapi.dependencies.utils
import fastapi.routing
import httpx

from api.app import create_app
from api.settings import ApiSettings
from bench.bench_api import pick_runs, routes


async def _in_place(func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    return func(*args, **kwargs)


async def measure(path: Path, labels: list[str] | None, requests: int) -> list[dict[str, object]]:
    """Median wall and CPU ms per request of each route (after one warm-up request)."""
    fastapi.routing.run_in_threadpool = _in_place  # type: ignore[assignment]
    fastapi.dependencies.utils.run_in_threadpool = _in_place  # type: ignore[assignment]
    run_id, spec_id, _ = pick_runs(path)
    paths = routes(run_id, spec_id)
    app = create_app(ApiSettings(warehouse=path, cache_size=0, ingest=False))
    app.state.db.connect()
    out: list[dict[str, object]] = []
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
        for label, route in paths.items():
            if labels and label not in labels:
                continue
            (await client.get(route)).raise_for_status()
            wall, cpu = [], []
            for _ in range(requests):
                w, c = time.perf_counter(), time.process_time()
                (await client.get(route)).raise_for_status()
                wall.append((time.perf_counter() - w) * 1000)
                cpu.append((time.process_time() - c) * 1000)
            out.append({"route": label, "wall_ms": statistics.median(wall), "cpu_ms": statistics.median(cpu)})
    app.state.db.close()
    return out


def main(argv: list[str] | None = None) -> int:
    raw = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=raw)
    parser.add_argument("--warehouse", type=Path, required=True, help="a warehouse at head (not written)")
    parser.add_argument("--routes", nargs="+", help="only these route labels (bench_api's; default: all)")
    parser.add_argument("--requests", type=int, default=21, help="timed requests per route (default 21)")
    args = parser.parse_args(argv)
    for row in asyncio.run(measure(args.warehouse, args.routes, args.requests)):
        print(f"{row['route']:22s} wall {row['wall_ms']:8.2f} ms   cpu {row['cpu_ms']:8.2f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
