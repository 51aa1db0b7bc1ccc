"""One test through a real uvicorn server started as `python -m api`."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_python_m_api_serves_the_warehouse(served_warehouse: Path) -> None:
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "api", "--warehouse", str(served_warehouse), "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, "server did not start"
            time.sleep(0.2)
        runs = httpx.get(f"{base}/v1/runs", timeout=5).json()
        assert len(runs["data"]) == 2
        assert httpx.get(f"{base}/openapi.json", timeout=5).json()["info"]["title"] == "fsgen"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_python_m_api_refuses_a_missing_file(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "api", "--warehouse", str(tmp_path / "x.duckdb")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2 and "python -m warehouse upgrade" in out.stderr
