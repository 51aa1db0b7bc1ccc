"""One test through a real uvicorn server started as `python -m api`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import duckdb
import httpx
import pytest
from pydantic import ValidationError

from api.db import Database
from api.process import api_process
from api.settings import ApiSettings
from tests.api.conftest import api_server


def test_python_m_api_serves_the_warehouse(served_warehouse: Path) -> None:
    with api_server(served_warehouse) as base:
        runs = httpx.get(f"{base}/v1/runs", timeout=5).json()
        assert len(runs["data"]) == 2
        assert httpx.get(f"{base}/openapi.json", timeout=5).json()["info"]["title"] == "fsgen"


def test_python_m_api_refuses_a_missing_file(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "api", "--warehouse", str(tmp_path / "x.duckdb")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2 and "python -m warehouse upgrade" in out.stderr


@pytest.mark.parametrize(
    ("name", "value"),
    [("FSGEN_CACHE_SIZE", "-1"), ("FSGEN_INGEST_INTERVAL_S", "nan"), ("FSGEN_INGEST_INTERVAL_S", "0"),
     ("FSGEN_MAX_ROWS", "0"), ("FSGEN_QUERY_TIMEOUT_MS", "-5"), ("FSGEN_HEADER_TIMEOUT_S", "inf"),
     ("FSGEN_KEEP_ALIVE_S", "0"), ("FSGEN_PORT", "70000"), ("FSGEN_QUERY_THREADS", "-1")],
)  # fmt: skip
def test_settings_out_of_range_are_refused(monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError):
        ApiSettings()


def test_python_m_api_names_a_bad_setting(tmp_path: Path) -> None:
    for name, value, words in (
        ("FSGEN_WORKER_THREADS", "0", "greater than or equal to 1"),
        ("FSGEN_CACHE_SIZE", "lots", "valid integer"),
    ):
        out = subprocess.run(
            [sys.executable, "-m", "api", "--warehouse", str(tmp_path / "x.duckdb")],
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, name: value},
        )
        assert out.returncode == 2 and "Traceback" not in out.stderr
        assert f"error: {name}={value!r}" in out.stderr and words in out.stderr
    # A flag's bad value is named by the flag.
    out = subprocess.run(
        [sys.executable, "-m", "api", "--warehouse", str(tmp_path / "x.duckdb"), "--port", "70000"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2 and "FSGEN" not in out.stderr
    assert out.stderr.startswith("error: --port=70000: ")


def test_access_log_is_off_unless_asked(served_warehouse: Path, tmp_path: Path) -> None:
    """A line per request costs more CPU than a cached answer: only `--access-log` (or FSGEN_ACCESS_LOG)
    writes them."""
    for args, env, logged in (
        ((), {}, False),
        (("--access-log",), {}, True),
        ((), {"FSGEN_ACCESS_LOG": "1"}, True),
    ):
        out = tmp_path / "stdout.txt"
        with (
            out.open("w") as sink,
            api_process(served_warehouse, args=args, env=env, stdout=sink) as (base, _),
        ):
            assert httpx.get(f"{base}/v1/runs?limit=1", timeout=10).status_code == 200
        text = out.read_text()
        assert ('"GET /v1/runs?limit=1 HTTP/1.1" 200' in text) is logged, (args, env, text[-500:])


def test_query_threads_reach_duckdb(served_warehouse: Path) -> None:
    with duckdb.connect() as plain:
        default = plain.execute("SELECT current_setting('threads')").fetchall()[0][0]
    for settings, threads in (
        (ApiSettings(warehouse=served_warehouse), default),
        (ApiSettings(warehouse=served_warehouse, query_threads=3), 3),
    ):
        db = Database.of(settings)
        cur = db.cursor()
        try:
            assert cur.execute("SELECT current_setting('threads')").fetchall() == [(threads,)]
        finally:
            cur.close()
            db.close()
