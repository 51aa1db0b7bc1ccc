"""The results cache: a repeated GET is answered from the 200 (or 404) it produced, errors and downloads
are never kept, run listings keep their live status, concurrent misses compute once, and every write of
the ingester (a run registered, a shard in, a run finished) changes the answers at once."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from api.cache import ResultCache, cacheable
from api.process import api_process
from api.settings import ApiSettings
from tests.api.conftest import asgi_client
from tests.conftest import TinyModels
from warehouse.migrate import upgrade

pytestmark = pytest.mark.anyio


def _response_keys(cache: ResultCache) -> list[tuple[object, ...]]:
    return [k for k in cache.snapshot() if isinstance(k, tuple) and len(k) > 1 and k[1] == "response"]


async def test_a_repeated_get_is_answered_from_the_cache(served_warehouse: Path) -> None:
    async with asgi_client(ApiSettings(warehouse=served_warehouse, cache_size=64)) as (c, app):
        cache: ResultCache = app.state.cache
        first = await c.get("/v1/cof", params={"group_by": "slm"})
        hits = cache.hits
        second = await c.get("/v1/cof", params={"group_by": "slm"})
        assert first.status_code == second.status_code == 200
        assert second.content == first.content and second.headers["content-type"] == "application/json"
        assert cache.hits == hits + 1
        # Another query string is another answer.
        other = await c.get("/v1/cof", params={"group_by": "method"})
        assert other.json()["group_by"] == ["method"] and other.content != first.content


async def test_errors_downloads_and_run_listings_are_not_kept(served_warehouse: Path) -> None:
    async with asgi_client(ApiSettings(warehouse=served_warehouse, cache_size=64)) as (c, app):
        cache: ResultCache = app.state.cache
        for _ in range(2):
            bad = await c.get("/v1/cof", params={"bogus": "1"})
            assert bad.status_code == 400 and bad.json()["error"]["code"] == "unknown_parameter"
        run_id = (await c.get("/v1/runs")).json()["data"][0]["run_id"]
        await c.get(f"/v1/runs/{run_id}")
        download = await c.get(f"/v1/runs/{run_id}/events", params={"format": "ndjson"})
        assert download.status_code == 200 and download.text.count("\n") > 0
        assert _response_keys(cache) == []  # nothing of the above was stored as a response
        await c.get(f"/v1/runs/{run_id}/samples")
    assert [k[2] for k in _response_keys(cache)] == [f"/v1/runs/{run_id}/samples"]


async def test_identical_requests_that_miss_together_are_routed_once(served_warehouse: Path) -> None:
    settings = ApiSettings(warehouse=served_warehouse, cache_size=64)
    async with asgi_client(settings) as (c, _):
        alone = await c.get("/v1/uncertainty", params={"group_by": "slm"})
    async with asgi_client(settings) as (c, app):  # a new app: nothing kept, every request misses
        cache: ResultCache = app.state.cache
        together = await asyncio.gather(*(c.get("/v1/uncertainty?group_by=slm") for _ in range(16)))
        assert {r.status_code for r in together} == {200}
        assert {r.content for r in together} == {alone.content}
        assert cache.shared == 15 and len(_response_keys(cache)) == 1
        # What is not kept is not shared: each of these is routed and answered on its own.
        bad = await asyncio.gather(*(c.get("/v1/uncertainty?bogus=1") for _ in range(8)))
        assert {r.status_code for r in bad} == {400} and cache.shared == 15


def test_which_paths_are_cacheable() -> None:
    assert cacheable("/v1/cof") and cacheable("/v1/routers/best") and cacheable("/v1/runs/3/samples")
    assert cacheable("/v1/runs") and cacheable("/v1/runs/3")  # with the liveness snapshot (test_stale.py)
    assert not cacheable("/health") and not cacheable("/dashboard")


async def test_a_cache_of_size_zero_keeps_nothing(served_warehouse: Path) -> None:
    async with asgi_client(ApiSettings(warehouse=served_warehouse, cache_size=0)) as (c, app):
        assert (await c.get("/v1/cof")).status_code == 200
        assert (await c.get("/v1/cof")).status_code == 200
    assert app.state.cache.snapshot() == [] and app.state.cache.hits == 0


def _wait_for(client: httpx.Client, path: str, ok: object, seconds: float = 15.0) -> httpx.Response:
    deadline = time.monotonic() + seconds
    while True:
        r = client.get(path)
        assert r.status_code == 200, r.text
        if callable(ok) and ok(r.json()):
            return r
        assert time.monotonic() < deadline, f"{path} still answers {r.text[:300]}"
        time.sleep(0.1)


def test_every_write_of_the_ingester_changes_the_answers(tiny_models: TinyModels, tmp_path: Path) -> None:
    warehouse = tmp_path / "w.duckdb"
    upgrade(warehouse)
    prompts = tmp_path / "p.jsonl"
    prompts.write_text('{"prompt": "the quick"}\n{"prompt": "def add(a"}\n{"prompt": "numbers 0 1"}\n')
    with api_process(warehouse) as (base, _), httpx.Client(base_url=base, timeout=30) as client:
        # Asked (and cached) before any run exists.
        for path in ("/v1/cof?group_by=status", "/v1/cof?status=complete", "/v1/models"):
            assert client.get(path).json()["data"] == []
        collector = subprocess.run(
            [sys.executable, "-m", "collector.run", "--llm", str(tiny_models.llm), "--slm",
             str(tiny_models.slm), "--prompts", str(prompts), "--max-new-tokens", "6",
             "--warehouse", str(warehouse), "--quiet"],
            capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert collector.returncode == 0, collector.stdout + collector.stderr
        runs = _wait_for(client, "/v1/runs", lambda b: b["data"] and b["data"][0]["status"] == "complete")
        run = runs.json()["data"][0]
        assert run["tokens"] > 0
        # The run finished after its last shard: the answers cached before it see the finished run.
        by_status = client.get("/v1/cof?group_by=status").json()["data"]
        assert [(r["group"]["status"], r["tokens"]) for r in by_status] == [("complete", run["tokens"])]
        complete = client.get("/v1/cof?status=complete").json()["data"]
        assert sum(r["tokens"] for r in complete) == run["tokens"]
        assert {m["name"] for m in client.get("/v1/models").json()["data"]} >= {run["llm"], run["slm"]}


def test_concurrent_misses_of_one_key_compute_once() -> None:
    cache = ResultCache(8, lambda reads: 0)
    calls: list[int] = []
    gate = threading.Event()

    def slow() -> str:
        calls.append(1)
        gate.wait(5)
        return "answer"

    key = cache.key_of("k")
    with ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(cache.get_or_compute, key, slow) for _ in range(8)]
        time.sleep(0.3)  # every thread has asked by now
        gate.set()
        assert [f.result(timeout=10) for f in futures] == ["answer"] * 8
    assert len(calls) == 1 and cache.joined == 7


def test_a_failed_computation_is_not_kept_and_waiters_compute_their_own() -> None:
    cache = ResultCache(8, lambda reads: 0)
    key = cache.key_of("k")

    def fail() -> str:
        raise RuntimeError("past its time limit")

    with pytest.raises(RuntimeError):
        cache.get_or_compute(key, fail)
    assert cache.get_or_compute(key, lambda: "fresh") == "fresh"


async def test_a_not_found_is_kept_like_an_answer(served_warehouse: Path) -> None:
    async with asgi_client(ApiSettings(warehouse=served_warehouse, cache_size=64)) as (c, app):
        first = await c.get("/v1/runs/999999/samples")
        second = await c.get("/v1/runs/999999/samples")
    assert first.status_code == second.status_code == 404 and first.content == second.content
    assert [k[2] for k in _response_keys(app.state.cache)] == ["/v1/runs/999999/samples"]
