"""The API under faults: a full disk that makes DuckDB invalidate the file (the server reopens it by itself),
slow clients (a header-read time limit), a collector holding the file at startup, hostile parameters."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from api.__main__ import main as api_main
from api.deps import encode_cursor
from api.process import answers, api_process, free_port
from api.settings import ApiSettings
from tests.api.conftest import asgi_client
from tests.warehouse.test_faults import _stage_big, small_disk  # noqa: F401  (fixture)
from warehouse.migrate import upgrade
from warehouse.settings import staging_dir

ROOT = Path(__file__).resolve().parents[2]


def _until(check: Callable[[], bool], timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)


def _status(url: str) -> int:
    return httpx.get(url, timeout=10).status_code


def test_the_server_reopens_the_file_after_a_full_disk_invalidated_it(small_disk: Path) -> None:  # noqa: F811
    """A real tmpfs: the ingester's commit reaches the write-ahead log, its checkpoint meets a full disk and
    DuckDB invalidates the database. /health says so (503), routes answer 503 in the one error shape; once
    space returns the same server process reopens the file and serves the run, nothing lost."""
    path = small_disk / "fsgen.duckdb"
    upgrade(path)
    hold = staging_dir(path) / ".hold"  # dot-named: the ingester does not look inside
    _stage_big(hold / "x.duckdb", "run-full", 20_000)
    with api_process(path, env={"FSGEN_INGEST_INTERVAL_S": "0.2"}) as (base, proc):
        free = shutil.disk_usage(small_disk).free
        (small_disk / "filler").write_bytes(b"\0" * (free - 3_500_000))
        os.replace(staging_dir(hold / "x.duckdb") / "run-full", staging_dir(path) / "run-full")
        _until(lambda: _status(f"{base}/health") == 503)
        body = httpx.get(f"{base}/health", timeout=10).json()["error"]
        assert body["code"] == "warehouse_unavailable" and "reopens the file by itself" in body["message"]
        runs = httpx.get(f"{base}/v1/runs", timeout=10)
        assert runs.status_code == 503 and runs.json()["error"]["code"] == "warehouse_unavailable"
        (small_disk / "filler").unlink()
        _until(lambda: _status(f"{base}/health") == 200)
        (run,) = httpx.get(f"{base}/v1/runs", timeout=10).json()["data"]
        assert run["status"] == "complete" and run["n_samples"] == 20
        assert proc.poll() is None  # the same process: no restart


def _closed_after(sock: socket.socket, timeout_s: float) -> float | None:
    """Seconds until the server closes the connection, None if it stays open for `timeout_s`."""
    start = time.monotonic()
    sock.settimeout(timeout_s)
    try:
        return time.monotonic() - start if sock.recv(1024) == b"" else None
    except TimeoutError:
        return None


HOLD = "import duckdb, sys, time; c = duckdb.connect(sys.argv[1]); print('x', flush=True); time.sleep({s})"


def _holder(path: Path, seconds: float) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen([sys.executable, "-c", HOLD.format(s=seconds), str(path)], stdout=subprocess.PIPE)
    assert proc.stdout is not None and proc.stdout.readline().strip() == b"x"
    return proc


def test_startup_waits_for_a_collectors_ingest_and_slow_clients_are_cut_off(
    rich_warehouse: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Real uvicorn: the server starts although another process holds the file as it starts (released
    within the startup wait); a client sending its headers slowly is disconnected after the header time
    limit while a prompt one is served; a file that stays held is one line and exit 2."""
    holder = _holder(rich_warehouse, 60)  # a collector's ingest, as the server starts
    port = free_port()
    env = {**os.environ, "FSGEN_HEADER_TIMEOUT_S": "1", "FSGEN_STARTUP_WAIT_S": "60"}
    cmd = [sys.executable, "-m", "api", "--warehouse", str(rich_warehouse), "--port", str(port)]
    server = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        assert server.stderr is not None
        assert b"is held by another process; waiting up to 60 s" in server.stderr.readline()
        holder.kill()
        base = f"http://127.0.0.1:{port}"
        _until(lambda: answers(f"{base}/health"))
        with socket.create_connection(("127.0.0.1", port)) as slow:
            slow.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")  # ... and the rest never comes
            closed = _closed_after(slow, 10)
        assert closed is not None and closed < 5
        assert _status(f"{base}/health") == 200
    finally:
        holder.kill()
        holder.wait()
        server.terminate()
        server.wait(timeout=30)
    holder = _holder(rich_warehouse, 60)
    monkeypatch.setenv("FSGEN_STARTUP_WAIT_S", "0.5")
    try:
        assert api_main(["--warehouse", str(rich_warehouse)]) == 2  # fails before uvicorn would start
    finally:
        holder.kill()
        holder.wait()
    err = capsys.readouterr().err
    assert "Traceback" not in err and "is held by a writer" in err and "FSGEN_STARTUP_WAIT_S" in err


@pytest.mark.anyio
async def test_hostile_parameters_get_their_4xx_and_health_hides_the_path(rich_warehouse: Path) -> None:
    settings = ApiSettings(warehouse=rich_warehouse, api_token="s3cret")
    async with asgi_client(settings) as (client, _):
        auth = {"Authorization": "Bearer s3cret"}
        r = await client.get("/v1/runs", params={"cursor": encode_cursor({"after": 10**100})}, headers=auth)
        assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_cursor"
        r = await client.get("/dashboard/static/a%00b.js")
        assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
        for headers in ({}, auth):
            health = await client.get("/health", headers=headers)
            assert health.status_code == 200 and str(rich_warehouse.parent) not in health.text
            assert health.json()["warehouse"] == rich_warehouse.name
        for wrong in ("Bearer s3cre", "Bearer s3cret ", "bearer s3cret", "Bearer s3cret2"):
            assert (await client.get("/v1/runs", headers={"Authorization": wrong})).status_code == 401
        assert (await client.get("/v1/runs", headers=auth)).status_code == 200
