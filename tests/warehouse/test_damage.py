"""A damaged warehouse (truncated, a block failing its checksum, a garbled WAL) is named in one line at every
door, never overwritten, and `python -m warehouse recover` saves what can be read into a new file."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.settings import ApiSettings
from collector.run import main as run_main
from tests.api.conftest import asgi_client
from tests.conftest import TinyModels
from tests.warehouse.test_faults import _runs, _stage
from warehouse.__main__ import main as warehouse_main
from warehouse.db import WarehouseDamaged
from warehouse.ingest import try_ingest
from warehouse.settings import staging_dir

HEADER_BYTES, BLOCK_BYTES = 3 * 4096, 262_144  # DuckDB's file headers, then fixed-size blocks
ROOT = Path(__file__).resolve().parents[2]
# Commits one more run's shard into the write-ahead log, then dies before any checkpoint folds it in.
COMMIT_TO_WAL_ONLY = """
import os, sys
import duckdb
from pathlib import Path
from warehouse.ingest import ingest_run_dir
con = duckdb.connect(sys.argv[1])
con.execute("SET checkpoint_threshold = '1TB'")
ingest_run_dir(con, Path(sys.argv[2]))
os._exit(0)
"""


def _block_of(path: Path, table: str) -> int:
    """Byte offset of the first block holding `table`'s data."""
    with duckdb.connect(str(path), read_only=True) as con:
        query = f"SELECT min(block_id) FROM pragma_storage_info('{table}') WHERE block_id >= 0"
        block = con.execute(query).fetchone()
    assert block is not None and block[0] is not None
    return HEADER_BYTES + int(block[0]) * BLOCK_BYTES


def _overwrite(path: Path, at: int, n: int = 64) -> None:
    with open(path, "r+b") as fh:
        fh.seek(at)
        fh.write(b"\xab" * n)


def _wal_holding_a_run(path: Path) -> None:
    """Stage a run and commit it to the WAL only (a real process, killed before its checkpoint)."""
    writer = _stage(path, "run-wal", shards=1, final=False)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    code = [sys.executable, "-c", COMMIT_TO_WAL_ONLY, str(path), str(writer.run_dir)]
    subprocess.run(code, check=True, env=env, timeout=120)
    assert Path(f"{path}.wal").stat().st_size > 0


def _damage(path: Path, kind: str, table: str = "runs") -> None:
    if kind == "truncated":
        with open(path, "r+b") as fh:
            fh.truncate(_block_of(path, table) + 100)
    elif kind == "checksum":
        _overwrite(path, _block_of(path, table) + 100)
    else:
        _wal_holding_a_run(path)
        wal = Path(f"{path}.wal")
        size = wal.stat().st_size  # garble its middle half: 16 bytes at one offset can miss every entry
        _overwrite(wal, size // 4, size // 2)


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _one_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in text, text
    return lines[0]


@pytest.mark.anyio
@pytest.mark.parametrize("kind", ["truncated", "checksum", "wal"])
async def test_every_door_names_the_damage_in_one_line_and_keeps_the_file(
    kind: str,
    warehouse_path: Path,
    tiny_models: TinyModels,
    prompts_file: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _stage(warehouse_path, "run-a", shards=2)
    try_ingest(warehouse_path)
    _damage(warehouse_path, kind)
    before = _digest(warehouse_path)
    where = f"--warehouse {warehouse_path}"
    capsys.readouterr()

    assert warehouse_main(["status", "--warehouse", str(warehouse_path)]) == 1
    out = capsys.readouterr().out
    assert (
        f"damage    : {warehouse_path} is damaged: " in out and f"python -m warehouse recover {where}" in out
    )

    assert warehouse_main(["sql", "SELECT * FROM runs", "--warehouse", str(warehouse_path)]) == 2
    line = _one_line(capsys.readouterr().err)
    assert line.startswith(f"error: {warehouse_path} is damaged: ") and "warehouse recover" in line

    args = ["--llm", str(tiny_models.llm), "--slm", str(tiny_models.slm), "--prompts", str(prompts_file)]
    assert (
        run_main(
            [*args, "--warehouse", str(warehouse_path), "--quiet", "--max-new-tokens", "2", "--no-calibrate"]
        )
        == 2
    )
    line = " ".join(capsys.readouterr().out.split())
    assert f"error: {warehouse_path} is damaged: " in line and "Traceback" not in line

    async with asgi_client(ApiSettings(warehouse=warehouse_path, ingest=False)) as (client, _):
        for route in ("/v1/runs", "/health"):  # /health too, once a request has met the damage
            r = await client.get(route)
            body = r.json()["error"]
            assert (r.status_code, body["code"]) == (503, "warehouse_damaged"), route
            assert "python -m warehouse recover" in body["message"]
    started = create_app(ApiSettings(warehouse=warehouse_path, ingest=False))
    try:
        with TestClient(started) as client:  # started as uvicorn starts it: it reads the runs first
            r = client.get("/health")
        assert kind == "checksum"  # opened (the runs' block fails only when read): every answer a 503
        assert (r.status_code, r.json()["error"]["code"]) == (503, "warehouse_damaged")
    except WarehouseDamaged:  # refused on opening, which `python -m api` says in one line
        assert kind != "checksum"
    finally:
        started.state.db.close()
    assert _digest(warehouse_path) == before  # never written


def test_recover_copies_what_can_be_read_and_ingests_the_staged_shards(
    warehouse_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A block of token_events fails its checksum: every other row is saved, the samples that lost events
    are dropped and their run marked failed with its resume command; a staged shard is ingested again."""
    _stage(warehouse_path, "run-a", shards=3)
    _stage(warehouse_path, "run-b", shards=1)
    try_ingest(warehouse_path)
    _stage(warehouse_path, "run-c", shards=1, final=True)  # still staged when the file breaks
    _overwrite(warehouse_path, _block_of(warehouse_path, "token_events") + 100)
    out = warehouse_path.with_name("saved.duckdb")
    capsys.readouterr()
    assert warehouse_main(["recover", "--out", str(out), "--warehouse", str(warehouse_path)]) == 1
    report = capsys.readouterr().out
    assert (
        "rows of token_events could not be read (the block at byte" in report
        and "incomplete: run 1 (run-a)" in report
    )
    assert "staged shards ingested again: 1 (10 samples)" in report
    runs = _runs(out)
    assert runs["run-c"] == ("complete", 10, None)
    status, samples, error = runs["run-a"]
    assert status == "failed" and samples < 30 and error is not None
    assert f"python -m collector.run --resume 1 --warehouse {out}" in error
    with duckdb.connect(str(out), read_only=True) as con:
        # what survived is whole: every sample kept has all of its token events, summaries agree
        partial = con.execute(
            "SELECT count(*) FROM samples s WHERE n_tokens != (SELECT count(*) FROM token_events e "
            "WHERE e.run_id = s.run_id AND e.sample_id = s.sample_id)"
        ).fetchone()
        sums = con.execute("SELECT sum(tokens) FROM run_sums").fetchone()
        events = con.execute("SELECT count(*) FROM token_events").fetchone()
    assert partial == (0,) and sums == events
    assert (staging_dir(warehouse_path) / "run-c").is_dir()  # left in place for the damaged file's sake
    assert warehouse_main(["status", "--warehouse", str(out)]) == 0
    assert "damage    : none found" in capsys.readouterr().out


@pytest.mark.parametrize("kind", ["truncated", "wal"])
def test_recover_reads_past_a_truncation_and_without_a_garbled_wal(
    kind: str, warehouse_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _stage(warehouse_path, "run-a", shards=2)
    try_ingest(warehouse_path)
    _stage(warehouse_path, "run-c", shards=1)  # still staged when the file breaks
    _damage(warehouse_path, kind, table="token_events")
    before = _digest(warehouse_path)
    out = warehouse_path.with_name("saved.duckdb")
    capsys.readouterr()
    assert warehouse_main(["recover", "--out", str(out), "--warehouse", str(warehouse_path)]) == 1
    report = capsys.readouterr().out
    runs = _runs(out)
    assert runs["run-c"] == ("complete", 10, None)  # staged shards go in whatever the file lost
    if kind == "wal":  # the log's shard is lost with it; its run is registered again from its staging folder
        assert ".wal cannot be replayed" in report and "committed after the last checkpoint is lost" in report
        assert runs["run-wal"] == ("running", 0, None) and runs["run-a"] == ("complete", 20, None)
    else:  # blocks past the end are lost: the catalogue (then nothing opens), or rows of token_events
        assert "(truncated?)" in report and "run-a" not in {k for k, v in runs.items() if v[0] == "complete"}
    assert _digest(warehouse_path) == before
