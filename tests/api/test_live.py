"""A collector and the API as real separate processes: the collector never waits, the API never fails,
finished batches show up while the run goes on, and a killed collector loses at most its batch in flight."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.api.conftest import api_server
from tests.conftest import TinyModels
from warehouse.migrate import upgrade


class Poller:
    """Polls the API from a thread, recording every failure and the run's visible progress over time."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.failures: list[str] = []
        self.seen: list[tuple[float, int, str]] = []  # (time, tokens, status) of the newest run
        self.requests = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> Poller:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _loop(self) -> None:
        with httpx.Client(base_url=self.base, timeout=10) as client:
            while not self._stop.is_set():
                for path in ("/v1/runs", "/v1/cof"):
                    r = client.get(path)
                    self.requests += 1
                    if r.status_code != 200:
                        self.failures.append(f"{path}: {r.status_code} {r.text[:200]}")
                    elif path == "/v1/runs" and r.json()["data"]:
                        run = r.json()["data"][-1]
                        self.seen.append((time.monotonic(), run["tokens"], run["status"]))
                time.sleep(0.05)


@pytest.fixture
def live_api(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    warehouse = tmp_path / "live.duckdb"
    upgrade(warehouse)
    with api_server(warehouse) as base:
        yield base, warehouse


def _collector(models: TinyModels, warehouse: Path, prompts: Path, *extra: str) -> subprocess.Popen[str]:
    args = [
        "--llm",
        str(models.llm),
        "--slm",
        str(models.slm),
        "--prompts",
        str(prompts),
        "--batch-size",
        "2",
        "--max-new-tokens",
        "24",
        "--warehouse",
        str(warehouse),
        "--quiet",
        *extra,
    ]
    return subprocess.Popen(
        [sys.executable, "-m", "collector.run", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _prompts(tmp_path: Path, n: int) -> Path:
    words = ["the quick brown", "question: what is", "def add(a", "numbers 0 1 2", "letters a b"]
    path = tmp_path / "many.jsonl"
    path.write_text("".join(json.dumps({"prompt": f"{words[i % 5]} {i}"}) + "\n" for i in range(n)))
    return path


def test_collector_and_api_side_by_side(
    live_api: tuple[str, Path], tiny_models: TinyModels, tmp_path: Path
) -> None:
    base, warehouse = live_api
    with Poller(base) as poller:
        start = time.monotonic()
        # 240 prompts: a quiet machine runs 40 of these tiny models before the first batch is ingested.
        proc = _collector(tiny_models, warehouse, _prompts(tmp_path, 240))
        out, _ = proc.communicate(timeout=300)
        finished = time.monotonic()
        assert proc.returncode == 0, out
        assert "staged and will be ingested" in out  # it did not wait for the API's lock
        while time.monotonic() < finished + 10 and not (poller.seen and poller.seen[-1][2] == "complete"):
            time.sleep(0.05)
    assert poller.failures == [] and poller.requests > 20
    complete_at = next(t for t, _, status in poller.seen if status == "complete")
    assert complete_at - finished < 5.0, "the last batch took more than 5 s to show up"
    partial = [tok for t, tok, status in poller.seen if status == "running" and start < t < finished]
    assert partial and max(partial) > 0, "no batch was visible while the collector ran"
    with httpx.Client(base_url=base) as client:
        run = client.get("/v1/runs").json()["data"][-1]
    assert run["tokens"] > 0 and run["n_samples"] == 240


def test_killed_collector_loses_only_the_batch_in_flight(
    live_api: tuple[str, Path], tiny_models: TinyModels, tmp_path: Path
) -> None:
    base, warehouse = live_api
    # Enough batches that the collector is still writing when the first one shows (a quiet machine
    # finishes 40 prompts of these tiny models before the kill lands).
    prompts = _prompts(tmp_path, 240)
    with Poller(base) as poller:
        proc = _collector(tiny_models, warehouse, prompts)
        deadline = time.monotonic() + 300  # the collector loads and calibrates first
        while not (poller.seen and poller.seen[-1][1] > 0):
            assert time.monotonic() < deadline and proc.poll() is None, "no batch became visible"
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        time.sleep(1.5)
        with httpx.Client(base_url=base) as client:
            run = client.get("/v1/runs").json()["data"][-1]
        # The collector's process is gone: the run is not complete and says it is stale (resumable).
        assert run["status"] == "stale" and run["tokens"] > 0
        run_key = next(p.name for p in (warehouse.parent / "live.duckdb.staging").iterdir() if p.is_dir())
        resumed = _collector(tiny_models, warehouse, prompts, "--resume", run_key)
        out, _ = resumed.communicate(timeout=300)
        assert resumed.returncode == 0, out
        time.sleep(2.0)
    assert poller.failures == []
    with httpx.Client(base_url=base) as client:
        runs = client.get("/v1/runs").json()["data"]
    assert len(runs) == 1 and runs[0]["status"] == "complete"
    reference = tmp_path / "ref.duckdb"
    upgrade(reference)
    ref = _collector(tiny_models, reference, prompts)
    assert ref.wait(timeout=300) == 0
    import duckdb

    with duckdb.connect(str(reference), read_only=True) as con:
        expected = con.execute("SELECT tokens FROM run_cof").fetchone()
    assert expected == (runs[0]["tokens"],)  # nothing lost, nothing twice
