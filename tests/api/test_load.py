"""64 concurrent clients on every route of a real `python -m api`, while a collector stages batches and the
server's ingester moves them in: zero failed requests (bounded in count and time, loopback only)."""

from __future__ import annotations

import asyncio
import shutil
import time
from pathlib import Path

import httpx

from tests.api.conftest import api_server
from tests.api.test_live import _collector, _prompts
from tests.conftest import TinyModels

CLIENTS = 64
ROUNDS = 1  # every client walks every route once: 64 × 17 requests
TIME_CAP_S = 75.0


def routes(run_id: int, spec_id: int) -> list[tuple[str, set[int]]]:
    """Every GET route with the statuses a correct answer may have (predict: 404 with too few pairs)."""
    ok = {200}
    return [
        ("/health", ok),
        ("/v1/models", ok),
        ("/v1/runs?limit=50", ok),
        (f"/v1/runs/{run_id}", ok),
        (f"/v1/runs/{run_id}/samples", ok),
        (f"/v1/runs/{run_id}/samples/0", ok),
        (f"/v1/runs/{run_id}/events?limit=100", ok),
        (f"/v1/runs/{run_id}/events?format=ndjson", ok),
        (f"/v1/runs/{run_id}/events?format=parquet", ok),
        ("/v1/cof?group_by=method", ok),
        ("/v1/scaling?bootstrap=20", ok),
        ("/v1/scaling/predict?method=oracle&dataset=prompts:p.jsonl&ratio=2", {200, 404}),
        ("/v1/uncertainty", ok),
        ("/v1/positions", ok),
        (f"/v1/routers/replay?run_id={run_id}", ok),
        (f"/v1/routers/best?run_id={run_id}&budget=0.3", ok),
        (f"/v1/speculative?run_id={spec_id}", ok),
    ]


async def client_loop(base: str, plan: list[tuple[str, set[int]]], offset: int, deadline: float) -> list[str]:
    failures: list[str] = []
    async with httpx.AsyncClient(base_url=base, timeout=30) as client:
        for i in range(ROUNDS * len(plan)):
            if time.monotonic() > deadline:
                break
            path, expected = plan[(i + offset) % len(plan)]
            try:
                r = await client.get(path)
                if r.status_code not in expected:
                    failures.append(f"{path}: {r.status_code} {r.text[:200]}")
            except httpx.HTTPError as exc:
                failures.append(f"{path}: {exc!r}")
    return failures


async def hammer(base: str, plan: list[tuple[str, set[int]]]) -> list[str]:
    deadline = time.monotonic() + TIME_CAP_S
    results = await asyncio.gather(*(client_loop(base, plan, i, deadline) for i in range(CLIENTS)))
    return [f for r in results for f in r]


def test_64_clients_on_every_route_while_a_collector_ingests(
    rich_warehouse: Path, tiny_models: TinyModels, tmp_path: Path
) -> None:
    warehouse = tmp_path / "load.duckdb"
    shutil.copy(rich_warehouse, warehouse)
    with api_server(warehouse) as base:
        runs = httpx.get(f"{base}/v1/runs", timeout=10).json()["data"]
        run_id = runs[0]["run_id"]
        spec_id = next(r["run_id"] for r in runs if r["method"] == "speculative")
        proc = _collector(tiny_models, warehouse, _prompts(tmp_path, 24))
        try:
            started = time.monotonic()
            failures = asyncio.run(hammer(base, routes(run_id, spec_id)))
            elapsed = time.monotonic() - started
            collecting = proc.poll() is None
            out, _ = proc.communicate(timeout=300)
        finally:
            proc.kill()
        assert proc.returncode == 0, out
        assert failures == [], failures[:5]
        assert elapsed < TIME_CAP_S, "the load did not finish in its time cap"
        deadline = time.monotonic() + 15
        while True:  # the collector's run arrives through the server's ingester
            new = [
                r for r in httpx.get(f"{base}/v1/runs", timeout=10).json()["data"] if r["run_id"] > spec_id
            ]
            if new and new[0]["status"] == "complete" or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert new and new[0]["status"] == "complete" and new[0]["tokens"] > 0
        runs = httpx.get(f"{base}/v1/runs", timeout=10).json()["data"]
        # baselines=true: the model alone (LLM with itself) is left out of /v1/cof by default, not of /v1/runs
        params = {"group_by": "run_id", "baselines": "true"}
        cof = httpx.get(f"{base}/v1/cof", params=params, timeout=10).json()["data"]
    # the aggregates asked for during the load (and kept) followed the ingest: no stale answer
    assert {r["run_id"]: r["tokens"] for r in runs} == {c["group"]["run_id"]: c["tokens"] for c in cof}
    print(f"{CLIENTS} clients, {elapsed:.1f} s, collector still running at the end: {collecting}")
