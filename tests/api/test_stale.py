"""The API shows a dead collector's run as `stale`, and refuses a file that is not a warehouse clearly."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.db import Database
from api.settings import ApiSettings
from bench.bench_ingest import manifest, synthetic_events, synthetic_samples
from warehouse.db import WarehouseError
from warehouse.ingest import try_ingest
from warehouse.settings import staging_dir
from warehouse.staging import HEARTBEAT, StagingWriter


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


@pytest.mark.anyio
async def test_runs_of_a_dead_collector_are_stale(warehouse_path: Path) -> None:
    for key in ("run-live", "run-dead"):
        writer = StagingWriter(staging_dir(warehouse_path), key)
        writer.write_manifest(replace(manifest(key), n_samples=20))
        writer.write_batch(
            0, synthetic_samples(range(10)), synthetic_events(1000, 0, np.random.default_rng(0))
        )
    beat = {"pid": _dead_pid(), "host": socket.gethostname(), "pid_start": None, "at": time.time()}
    (staging_dir(warehouse_path) / "run-dead" / HEARTBEAT).write_text(json.dumps(beat))
    try_ingest(warehouse_path)
    app = create_app(ApiSettings(warehouse=warehouse_path, ingest=False))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
        runs = (await client.get("/v1/runs")).json()["data"]
        one = (await client.get("/v1/runs/1")).json()
    app.state.db.close()
    assert [r["status"] for r in runs] == ["stale", "running"]  # ingested by key: run-dead is run 1
    assert one["status"] == "stale"


def test_a_listing_is_cached_with_the_liveness_it_shows(warehouse_path: Path) -> None:
    """Run listings are cached under the server's liveness snapshot: a collector that dies shows as `stale`
    once the snapshot is read again (at most a second later), without any ingest."""
    writer = StagingWriter(staging_dir(warehouse_path), "run-dies")
    writer.write_manifest(replace(manifest("run-dies"), n_samples=20))
    writer.write_batch(0, synthetic_samples(range(10)), synthetic_events(100, 0, np.random.default_rng(0)))
    alive = {"pid": os.getpid(), "host": socket.gethostname(), "pid_start": None, "at": time.time()}
    (writer.run_dir / HEARTBEAT).write_text(json.dumps(alive))
    try_ingest(warehouse_path)
    app = create_app(ApiSettings(warehouse=warehouse_path, ingest=False))
    try:
        with TestClient(app) as client:  # started: the runs are read, so listings are cached
            statuses = lambda: [client.get(p).json() for p in ("/v1/runs", "/v1/runs/1")]  # noqa: E731
            first = statuses()
            hits = app.state.cache.hits
            assert statuses() == first and app.state.cache.hits == hits + 2
            assert [first[0]["data"][0]["status"], first[1]["status"]] == ["running", "running"]
            (writer.run_dir / HEARTBEAT).write_text(json.dumps({**alive, "pid": _dead_pid()}))
            time.sleep(1.1)
            later = statuses()
    finally:
        app.state.db.close()
    assert [later[0]["data"][0]["status"], later[1]["status"]] == ["stale", "stale"]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def test_a_file_that_is_not_duckdb_is_not_called_locked(tmp_path: Path) -> None:
    path = tmp_path / "text.duckdb"
    path.write_text("hello\n")
    with pytest.raises(WarehouseError, match="not an fsgen warehouse"):
        Database(path, 1000).connect()
