"""Freshness by what an answer reads: shards of a running run leave the answers about other runs cached;
a run's own answers, and those whose filters select it, change with its writes (real ingests)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import httpx
import numpy as np
import pytest

from api.cache import ResultCache
from api.freshness import LATEST, reads_of
from api.ingester import BackgroundIngester
from api.settings import ApiSettings
from bench.bench_ingest import manifest, synthetic_events, synthetic_samples
from tests.api.conftest import asgi_client
from warehouse.ingest import try_ingest
from warehouse.settings import staging_dir
from warehouse.staging import RunFinal, StagingWriter

pytestmark = pytest.mark.anyio
RNG = np.random.default_rng(0)


def _shard(writer: StagingWriter, first: int) -> None:
    writer.write_batch(first, synthetic_samples(range(first, first + 5)), synthetic_events(200, first, RNG))


async def _get(c: httpx.AsyncClient, cache: ResultCache, path: str) -> tuple[bytes, bool]:
    """The answer's bytes, and whether the cache answered it."""
    hits = cache.hits
    r = await c.get(path)
    assert r.status_code == 200, r.text
    return r.content, cache.hits == hits + 1


async def test_answers_are_kept_until_the_runs_they_read_change(warehouse_path: Path) -> None:
    done = StagingWriter(staging_dir(warehouse_path), "done")
    done.write_manifest(replace(manifest("done"), llm="llm-done", n_samples=5))
    _shard(done, 0)
    done.write_final(RunFinal("complete", "2026-01-01T00:00:00", 1.0, 1.0))
    live = StagingWriter(staging_dir(warehouse_path), "live")
    live.write_manifest(replace(manifest("live"), n_samples=15))
    _shard(live, 0)
    assert try_ingest(warehouse_path) is not None  # run 1: done (complete), run 2: live (running)
    async with asgi_client(ApiSettings(warehouse=warehouse_path, ingest=True)) as (c, app):
        ingester = BackgroundIngester(app.state.db.cursor, warehouse_path, 60, app.state.versions)
        ingester.ingest_once()  # the server's first pass: nothing staged, the runs' rows read
        cache: ResultCache = app.state.cache
        about_done = (
            "/v1/cof?llm=llm-done",
            "/v1/runs/1/samples",
            "/v1/cof?run_id=1",
            "/v1/cof?status=complete",
        )
        about_live = (
            "/v1/runs/2/samples",
            "/v1/cof",
            "/v1/cof?status=running",
            "/v1/positions?run_id=1&run_id=2",
        )
        before = {p: (await _get(c, cache, p))[0] for p in (*about_done, *about_live)}

        _shard(live, 5)  # a shard of the running run lands
        assert ingester.ingest_once().shards == 1
        for path in about_done:
            assert await _get(c, cache, path) == (before[path], True), path
        for path in about_live:
            body, hit = await _get(c, cache, path)
            assert not hit, path
        assert (await c.get("/v1/cof?status=running")).json()["data"][0]["tokens"] == 400

        _shard(live, 10)
        live.write_final(RunFinal("complete", "2026-01-01T00:00:00", 1.0, 1.0))
        assert ingester.ingest_once().runs_finished == 1  # the run finishing: now read by status=complete
        for path, cached in (("/v1/cof?llm=llm-done", True), ("/v1/runs/1/samples", True),
                             ("/v1/cof?status=complete", False)):  # fmt: skip
            assert (await _get(c, cache, path))[1] == cached, path
        complete = (await c.get("/v1/cof?status=complete&group_by=run_id")).json()["data"]
        assert [r["tokens"] for r in complete] == [200, 600]


def test_what_a_request_reads() -> None:
    assert reads_of("/v1/runs/7/samples", b"limit=5") == (("run_id", ("7",)),)
    assert reads_of("/v1/runs", b"limit=5") == ()  # no filter: every run
    # An aggregate names no experiment: it reads the most recent one's runs (resolved per version).
    assert reads_of("/v1/cof", b"group_by=slm&confidence=0.9") == (("experiment", (LATEST,)),)
    assert reads_of("/v1/cof", b"experiment=a") == (("experiment", ("a",)),)
    assert reads_of("/v1/cof", b"run_id=3&run_id=1,2&method=oracle") == (
        ("method", ("oracle",)), ("run_id", ("1", "2", "3")))  # fmt: skip
