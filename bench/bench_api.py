"""Load on a real `python -m api` (uvicorn) over synthetic warehouses: p99 per route and downloads.

    python -m bench.bench_api                                   # 1M and 10M events, 16 and 64 clients
    python -m bench.bench_api --events 1000000 --clients 16 --seconds 3

Each size's warehouse is made once by `bench/gen_synthetic.py` (then `python -m warehouse
rebuild-summaries`, so the summary tables hold its events whatever that script fills) under `--workdir`.
For every route, C concurrent clients (one process, loopback: raw keep-alive HTTP/1.1 on asyncio, or httpx
with `--client httpx`) send requests for S seconds; each latency is the full round trip. Then one run of
`--download-events` events is streamed as NDJSON and as Parquet, each from a fresh server, reading the
server's peak RSS (VmHWM) from /proc.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import duckdb
import httpx
import numpy as np

from api.process import api_process

REPO = Path(__file__).resolve().parent.parent
PY = sys.executable


def routes(run_id: int, spec_id: int) -> dict[str, str]:
    """Route label -> path with parameters: every aggregate route, and the row listings beside them."""
    return {
        "cof": "/v1/cof?group_by=method&group_by=dataset",
        "scaling": "/v1/scaling?method=oracle&dataset=gsm8k&bootstrap=100",
        "scaling/predict": "/v1/scaling/predict?method=oracle&dataset=gsm8k&ratio=10&bootstrap=100",
        "uncertainty": "/v1/uncertainty?group_by=method",
        "uncertainty?run_id": f"/v1/uncertainty?run_id={run_id}",
        "positions": "/v1/positions?group_by=method",
        "positions?run_id": f"/v1/positions?run_id={run_id}&k=10",
        "routers/replay": f"/v1/routers/replay?run_id={run_id}&router=entropy&n_thresholds=50",
        "routers/best": f"/v1/routers/best?run_id={run_id}&budget=0.3",
        "speculative": f"/v1/speculative?run_id={spec_id}",
        "runs?limit=50": "/v1/runs?limit=50",
        "runs/{id}": f"/v1/runs/{run_id}",
        "runs/{id}/samples": f"/v1/runs/{run_id}/samples?limit=50",
        "models": "/v1/models",
        "health": "/health",
    }


@contextmanager
def server(warehouse: Path, cache_size: int = 256, memory_limit: str = "") -> Iterator[tuple[str, int]]:
    """`python -m api` on the file; yields (base URL, pid) once /health answers."""
    env = {
        "FSGEN_CACHE_SIZE": str(cache_size),
        **({"FSGEN_MEMORY_LIMIT": memory_limit} if memory_limit else {}),
    }
    with api_process(warehouse, env=env) as (base, proc):
        yield base, proc.pid


def peak_rss_mib(pid: int, field: str = "VmHWM") -> float:
    """Peak (VmHWM) or current (VmRSS) resident memory of a process, MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} for pid {pid}")


# a fit needs three distinct ratios: on a small warehouse the prediction is a correct 404
OK_STATUSES = {200, 404}


async def _client(
    client: httpx.AsyncClient, path: str, until: float, lat: list[float], bad: list[str]
) -> None:
    ok = OK_STATUSES if "/predict" in path else {200}
    while time.perf_counter() < until:
        t0 = time.perf_counter()
        try:
            r = await client.get(path)
            if r.status_code not in ok:
                bad.append(f"{r.status_code} {r.text[:120]}")
        except httpx.HTTPError as exc:
            bad.append(repr(exc))
        lat.append(time.perf_counter() - t0)


async def _raw_client(base: str, path: str, until: float, lat: list[float], bad: list[str]) -> None:
    """One keep-alive HTTP/1.1 connection sending GETs back to back (a few microseconds of client work per
    request, where httpx spends about a millisecond: with 16 clients in one process that would be the
    queue being measured)."""
    ok = OK_STATUSES if "/predict" in path else {200}
    host, port = base.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    request = f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()
    try:
        while time.perf_counter() < until:
            t0 = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head.split(b" ", 2)[1])
            length = next(
                int(line.split(b":", 1)[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            )
            body = await reader.readexactly(length)
            lat.append(time.perf_counter() - t0)
            if status not in ok:
                bad.append(f"{status} {body[:120]!r}")
    finally:
        writer.close()


async def load(
    base: str, path: str, clients: int, seconds: float, kind: str = "raw"
) -> dict[str, float | int | str]:
    """`clients` concurrent clients on one path for `seconds`: latency percentiles and failures."""
    lat: list[float] = []
    bad: list[str] = []
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=base, timeout=60, limits=limits) as client:
        await client.get(path)  # warm
        until = time.perf_counter() + seconds
        if kind == "httpx":
            await asyncio.gather(*(_client(client, path, until, lat, bad) for _ in range(clients)))
        else:
            await asyncio.gather(*(_raw_client(base, path, until, lat, bad) for _ in range(clients)))
    ms = np.asarray(lat) * 1000
    return {
        "requests": len(lat),
        "failed": len(bad),
        "p50_ms": float(np.percentile(ms, 50)),
        "p99_ms": float(np.percentile(ms, 99)),
        "first_failure": bad[0] if bad else "",
    }


@contextmanager
def collecting(warehouse: Path) -> Iterator[None]:
    """Collectors (zoo-m with zoo-xs, batches of 2) staging next to `warehouse`, one after another, for as
    long as the load runs: the server ingests every batch, each ingest a new generation, so the cached
    answers start over about every half second."""
    stop = threading.Event()
    current: list[subprocess.Popen[str]] = []

    def loop() -> None:
        for seed in itertools.count():  # a new seed: a new run (the same settings would only resume)
            if stop.is_set():
                return
            proc = subprocess.Popen(
                [PY, "-m", "collector.run", "--llm", "zoo:zoo-m", "--slm", "zoo:zoo-xs", "--dataset",
                 "builtin:code", "--samples", "450", "--batch-size", "2", "--max-new-tokens", "24",
                 "--threads", "1", "--seed", str(seed), "--warehouse", str(warehouse), "--quiet"],
                cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True,
            )  # fmt: skip
            current[:] = [proc]
            while proc.poll() is None and not stop.wait(0.2):
                pass

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        for proc in current:
            proc.terminate()
            proc.wait(timeout=60)
        thread.join(timeout=60)


def make_warehouse(workdir: Path, events: int) -> Path:
    """The synthetic warehouse of `events` events (made once), with its summary tables filled."""
    path = workdir / f"synth_{events}.duckdb"
    if not path.exists():
        subprocess.run(
            [PY, "bench/gen_synthetic.py", "--out", str(path), "--events", str(events)], cwd=REPO, check=True
        )
        subprocess.run(
            [PY, "-m", "warehouse", "rebuild-summaries", "--warehouse", str(path)], cwd=REPO, check=True
        )
    return path


def pick_runs(path: Path) -> tuple[int, int, int]:
    """(an oracle/always run, a speculative run, total events) of a warehouse."""
    with duckdb.connect(str(path), read_only=True) as con:
        oracle = con.execute(
            "SELECT min(run_id) FROM runs WHERE method = 'oracle' AND router = 'always'"
        ).fetchall()
        spec = con.execute("SELECT min(run_id) FROM runs WHERE method = 'speculative'").fetchall()
        events = con.execute("SELECT count(*) FROM token_events").fetchall()
    return int(oracle[0][0]), int(spec[0][0]), int(events[0][0])


def one_run_warehouse(workdir: Path, source: Path, events: int) -> Path:
    """A warehouse whose single run holds `events` events (taken from `source`, renumbered)."""
    path = workdir / f"one_run_{events}.duckdb"
    if path.exists():
        return path
    from warehouse.migrate import upgrade

    upgrade(path)
    with duckdb.connect(str(path)) as con:
        con.execute(f"ATTACH '{source}' AS src (READ_ONLY)")
        con.execute("INSERT INTO models SELECT * FROM src.models")
        con.execute(
            "INSERT INTO runs SELECT * FROM src.runs WHERE run_id = (SELECT min(run_id) FROM src.runs)"
        )
        con.execute(
            """INSERT INTO token_events BY NAME
               SELECT * REPLACE ((SELECT min(run_id) FROM src.runs) AS run_id,
                                 CAST(run_id * 1000 + sample_id AS INTEGER) AS sample_id)
               FROM src.token_events LIMIT ?""",
            [events],
        )
        con.execute("DETACH src")
        con.execute("CHECKPOINT")
    subprocess.run(
        [PY, "-m", "warehouse", "rebuild-summaries", "--warehouse", str(path)], cwd=REPO, check=True
    )
    return path


def download(path: Path, fmt: str, memory_limit: str = "") -> dict[str, float]:
    """Stream one run's events from a fresh server: events/s, MiB, server RSS before and peak."""
    with server(path, memory_limit=memory_limit) as (base, pid):
        run_id = httpx.get(f"{base}/v1/runs", timeout=30).json()["data"][0]["run_id"]
        before = peak_rss_mib(pid, "VmRSS")
        started = time.perf_counter()
        size, lines = 0, 0
        with httpx.stream("GET", f"{base}/v1/runs/{run_id}/events", params={"format": fmt}, timeout=600) as r:
            r.raise_for_status()
            for chunk in r.iter_bytes():
                size += len(chunk)
                lines += chunk.count(b"\n") if fmt == "ndjson" else 0
        wall = time.perf_counter() - started
        peak = peak_rss_mib(pid)
    with duckdb.connect(str(path), read_only=True) as con:
        (events,) = con.execute("SELECT count(*) FROM token_events").fetchall()[0]
    if fmt == "ndjson" and lines != events:
        raise RuntimeError(f"NDJSON had {lines} lines for {events} events")
    return {"events": events, "seconds": wall, "events_per_s": events / wall, "mib": size / 2**20,
            "rss_before_mib": before, "rss_peak_mib": peak}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, nargs="+", default=[1_000_000, 10_000_000])
    parser.add_argument("--clients", type=int, nargs="+", default=[16, 64])
    parser.add_argument("--seconds", type=float, default=5.0, help="load per route and client count")
    parser.add_argument(
        "--download-events", type=int, default=10_000_000, help="events of the downloaded run"
    )
    parser.add_argument("--download-source", type=Path, help="warehouse of the run (default: largest)")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/fsgen_bench"))
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    parser.add_argument("--skip-downloads", action="store_true")
    parser.add_argument("--routes", nargs="+", help="only these route labels (default: every route)")
    parser.add_argument(
        "--with-collector",
        action="store_true",
        help="run a collector (zoo-m with zoo-xs) staging batches throughout the load",
    )
    parser.add_argument(
        "--client",
        choices=("raw", "httpx"),
        default="raw",
        help="load generator: raw keep-alive HTTP/1.1 on asyncio (default) or httpx.AsyncClient",
    )
    parser.add_argument("--skip-load", action="store_true", help="only the downloads")
    parser.add_argument(
        "--memory-limit", default="", help="the download server's DuckDB memory_limit, e.g. 256MB"
    )
    parser.add_argument(
        "--cache-size",
        type=int,
        default=256,
        help="the server's results cache (default 256, as `python -m api`; 0: every request computes)",
    )
    args = parser.parse_args(argv)
    args.workdir.mkdir(parents=True, exist_ok=True)
    results: dict[str, object] = {
        "load": [], "downloads": {}, "cache_size": args.cache_size, "client": args.client
    }  # fmt: skip
    largest = None
    for events in args.events:
        path = make_warehouse(args.workdir, events)
        run_id, spec_id, total = pick_runs(path)
        largest = path
        if args.skip_load:
            continue
        if args.with_collector:  # a copy: the collector's run must not change the next benchmark's file
            live = path.with_name(path.stem + "_live.duckdb")
            shutil.copyfile(path, live)
            shutil.rmtree(live.with_name(live.name + ".staging"), ignore_errors=True)
            path = live
        with server(path, args.cache_size) as (base, _), ExitStack() as stack:
            if args.with_collector:
                stack.enter_context(collecting(path))
            for clients in args.clients:
                for label, route in routes(run_id, spec_id).items():
                    if args.routes and label not in args.routes:
                        continue
                    row = {"events": total, "clients": clients, "route": label,
                           **asyncio.run(load(base, route, clients, args.seconds, args.client))}  # fmt: skip
                    results["load"].append(row)  # type: ignore[attr-defined]
                    print(json.dumps(row), flush=True)
            if args.with_collector:
                runs = httpx.get(f"{base}/v1/runs?limit=1000", timeout=30).json()["data"]
                new = [r for r in runs if r["run_id"] > spec_id and r["dataset"] == "builtin:code"]
                print(f"collected while loaded: {len(new)} runs, {sum(r['tokens'] for r in new)} tokens")
    if largest is not None and not args.skip_downloads:
        one = one_run_warehouse(args.workdir, args.download_source or largest, args.download_events)
        for fmt in ("ndjson", "parquet"):
            results["downloads"][fmt] = download(one, fmt, args.memory_limit)  # type: ignore[index]
            print(json.dumps({"download": fmt, **results["downloads"][fmt]}), flush=True)  # type: ignore[index]
    if args.out:
        args.out.write_text(json.dumps(results, indent=1))
    print_tables(results)
    return 0


def print_tables(results: dict[str, object]) -> None:
    """Markdown tables: p99 per route, size and client count, and the 10M / 1M ratio."""
    rows = results["load"]
    assert isinstance(rows, list)
    sizes = sorted({r["events"] for r in rows})
    clients = sorted({r["clients"] for r in rows})
    labels = list(dict.fromkeys(r["route"] for r in rows))
    p99 = {(r["events"], r["clients"], r["route"]): r for r in rows}
    cols = [f"p99 ms {s / 1e6:g}M/{c}" for s in sizes for c in clients]
    ratio = len(sizes) > 1
    head = [
        "route",
        *cols,
        *([f"p99 ratio {sizes[-1] / 1e6:g}M/{sizes[0] / 1e6:g}M ({clients[0]} cl.)"] if ratio else []),
        "failed",
    ]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for label in labels:
        cells = [f"{p99[(s, c, label)]['p99_ms']:.1f}" for s in sizes for c in clients]
        if ratio:
            c0 = clients[0]
            cells.append(
                f"{p99[(sizes[-1], c0, label)]['p99_ms'] / p99[(sizes[0], c0, label)]['p99_ms']:.2f}"
            )
        failed = sum(int(p99[(s, c, label)]["failed"]) for s in sizes for c in clients)
        print(f"| {label} | " + " | ".join(cells) + f" | {failed} |")
    downloads = results["downloads"]
    assert isinstance(downloads, dict)
    for fmt, d in downloads.items():
        rate = f"{d['events']:,} events in {d['seconds']:.1f} s = {d['events_per_s']:,.0f} events/s"
        rss = f"server RSS {d['rss_before_mib']:.0f} MiB before, peak {d['rss_peak_mib']:.0f} MiB"
        print(f"{fmt}: {rate}, {d['mib']:.0f} MiB; {rss}")


if __name__ == "__main__":
    sys.exit(main())
