"""Staged shards are ingested idempotently, as Arrow, and a run is marked finished only when all is in."""

from __future__ import annotations

import shutil
import sys
from dataclasses import replace
from pathlib import Path

import duckdb
import numpy as np
import pytest

from bench.bench_ingest import manifest, synthetic_events, synthetic_samples
from warehouse.db import WarehouseLocked, open_duckdb
from warehouse.ingest import ensure_run, ingest_pending, new_run_row, try_ingest
from warehouse.settings import staging_dir
from warehouse.staging import RunFinal, StagingWriter, batch_dirs

HOLD = "import duckdb, time; c = duckdb.connect({path!r}); print('x', flush=True); time.sleep(30)"


def _stage(path: Path, run_key: str, shards: int, final: bool = True) -> StagingWriter:
    writer = StagingWriter(staging_dir(path), run_key)
    writer.write_manifest(manifest(run_key))
    rng = np.random.default_rng(0)
    for i in range(shards):
        writer.write_batch(
            i * 10, synthetic_samples(range(i * 10, i * 10 + 10)), synthetic_events(1000, i * 10, rng)
        )
    if final:
        writer.write_final(RunFinal("complete", "2026-01-01T00:00:00", 1.0, 1.0))
    return writer


def _counts(path: Path) -> tuple[int, int, int, str]:
    with duckdb.connect(str(path), read_only=True) as con:
        ev = con.execute("SELECT count(*) FROM token_events").fetchone()
        sa = con.execute("SELECT count(*) FROM samples").fetchone()
        led = con.execute("SELECT count(*) FROM ingested_shards").fetchone()
        st = con.execute("SELECT status FROM runs").fetchone()
    assert ev and sa and led and st
    return ev[0], sa[0], led[0], st[0]


def test_ingest_moves_everything_and_cleans_up(warehouse_path: Path) -> None:
    _stage(warehouse_path, "run-a", shards=3)
    report = try_ingest(warehouse_path)
    assert report is not None and (report.shards, report.events, report.samples) == (3, 3000, 30)
    assert _counts(warehouse_path) == (3000, 30, 3, "complete")
    assert not (staging_dir(warehouse_path) / "run-a").exists()


def test_a_shard_ingested_twice_changes_nothing(warehouse_path: Path, tmp_path: Path) -> None:
    writer = _stage(warehouse_path, "run-b", shards=2, final=False)
    saved = tmp_path / "copy"
    shutil.copytree(writer.run_dir, saved)
    try_ingest(warehouse_path)
    # A crash after commit but before the folders were removed leaves them behind: restore them.
    shutil.rmtree(writer.run_dir)
    shutil.copytree(saved, writer.run_dir)
    report = try_ingest(warehouse_path)
    assert report is not None and report.shards == 0
    assert _counts(warehouse_path) == (2000, 20, 2, "running")
    assert batch_dirs(writer.run_dir) == []


def test_run_stays_running_until_final_record(warehouse_path: Path) -> None:
    writer = _stage(warehouse_path, "run-c", shards=1, final=False)
    try_ingest(warehouse_path)
    assert _counts(warehouse_path)[3] == "running"
    writer.write_final(RunFinal("failed", "2026-01-01T00:00:00", 1.0, 1.0, "boom"))
    try_ingest(warehouse_path)
    assert _counts(warehouse_path)[3] == "failed"


def test_locked_file_is_reported_not_waited_for(warehouse_path: Path) -> None:
    _stage(warehouse_path, "run-d", shards=1)
    import subprocess

    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            HOLD.format(path=str(warehouse_path)),
        ],
        stdout=subprocess.PIPE,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == b"x"
        assert try_ingest(warehouse_path) is None
        with pytest.raises(WarehouseLocked):
            open_duckdb(warehouse_path)
    finally:
        holder.kill()
        holder.wait()
    assert try_ingest(warehouse_path) is not None
    with duckdb.connect(str(warehouse_path)) as con:
        assert ingest_pending(con, warehouse_path).shards == 0


def test_a_new_run_row_holds_every_manifest_field(warehouse_path: Path) -> None:
    """The `runs` INSERT is derived from RunManifest's fields: each lands in its column, as stored before."""
    m = replace(manifest("run-r"), slm_tuned="bench-tuned", threshold=0.25, seed=7, settings={"b": 1, "a": 2})
    row = new_run_row(m)
    assert set(row) == {
        "run_key", "created_at", "llm", "slm", "slm_tuned", "method", "router", "threshold", "dataset",
        "status", "n_samples", "seed", "temperature", "top_p", "device", "dtype", "settings", "experiment",
    }  # fmt: skip
    with duckdb.connect(str(warehouse_path)) as con:
        run_id = ensure_run(con, m)
        got = con.execute(f"SELECT {', '.join(row)} FROM runs WHERE run_id = ?", [run_id]).fetchone()
    assert got is not None
    assert dict(zip(row, got, strict=True)) == {**row, "settings": '{"a": 2, "b": 1}', "status": "running"}
