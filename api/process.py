"""`python -m api` as a real child process on a free loopback port (tests, benchmarks, screenshots)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any


def free_port() -> int:
    """A loopback port nobody listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def answers(url: str, timeout_s: float = 1.0) -> bool:
    """True when `url` answers 200 (False while the server is not listening yet)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


@contextmanager
def api_process(
    warehouse: Path,
    *,
    args: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    stderr: int | IO[Any] | None = subprocess.DEVNULL,
    stdout: int | IO[Any] | None = subprocess.DEVNULL,
    start_timeout_s: float = 120.0,  # imports alone take tens of seconds on a busy two-core machine
) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    """Start the API on `warehouse`; yields (base URL, process) once /health answers; stops it after."""
    port = free_port()
    cmd = [sys.executable, "-m", "api", "--warehouse", str(warehouse), "--port", str(port), *args]
    proc = subprocess.Popen(cmd, env={**os.environ, **(env or {})}, stdout=stdout, stderr=stderr, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + start_timeout_s
        while not answers(f"{base}/health"):
            if proc.poll() is not None or time.monotonic() > deadline:
                detail = proc.stderr.read() if proc.stderr and proc.poll() is not None else ""
                raise RuntimeError(f"the API server on {warehouse} did not start {detail}".strip())
            time.sleep(0.2)
        yield base, proc
    finally:
        proc.terminate()
        proc.wait(timeout=30)
