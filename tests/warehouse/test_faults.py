"""No bad shard stops ingest: it is quarantined with its reason; dead collectors show as stale."""

from __future__ import annotations

import json
import logging
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import duckdb
import numpy as np
import pytest

from api.ingester import BackgroundIngester
from bench.bench_ingest import manifest, synthetic_events, synthetic_samples
from warehouse.__main__ import main as warehouse_main
from warehouse.ingest import try_ingest
from warehouse.liveness import STALE_AFTER_S, displayed_status, run_liveness
from warehouse.migrate import upgrade
from warehouse.quarantine import quarantined_shards
from warehouse.settings import staging_dir
from warehouse.staging import EVENTS_FILE, HEARTBEAT, RunFinal, StagingWriter, staged_sample_ids


def _stage(path: Path, run_key: str, shards: int, final: bool = True) -> StagingWriter:
    writer = StagingWriter(staging_dir(path), run_key)
    writer.write_manifest(replace(manifest(run_key), n_samples=10 * shards))
    rng = np.random.default_rng(0)
    for i in range(shards):
        writer.write_batch(
            i * 10, synthetic_samples(range(i * 10, i * 10 + 10)), synthetic_events(1000, i * 10, rng)
        )
    if final:
        writer.write_final(RunFinal("complete", "2026-01-01T00:00:00", 1.0, 1.0))
    return writer


def _runs(path: Path) -> dict[str, tuple[str, int, str | None]]:
    query = (
        "SELECT r.run_key, r.status, (SELECT count(*) FROM samples s WHERE s.run_id = r.run_id), r.error "
        "FROM runs r"
    )
    with duckdb.connect(str(path), read_only=True) as con:
        return {k: (st, n, e) for k, st, n, e in con.execute(query).fetchall()}


def test_truncated_shard_is_quarantined_and_everything_else_ingests(
    warehouse_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = _stage(warehouse_path, "run-bad", shards=3)
    _stage(warehouse_path, "run-good", shards=2)
    events = bad.run_dir / "batch-00000010" / EVENTS_FILE
    with open(events, "r+b") as fh:
        fh.truncate(2000)
    report = try_ingest(warehouse_path)
    assert report is not None and report.shards == 4 and len(report.quarantined) == 1
    runs = _runs(warehouse_path)
    assert runs["run-good"] == ("complete", 20, None)
    status, samples, error = runs["run-bad"]
    assert (status, samples) == ("failed", 20)  # never `complete` with a shard missing
    assert error is not None and "10 of 30 samples are missing" in error and "--resume" in error
    (q,) = quarantined_shards(staging_dir(warehouse_path))
    assert q.run_key == "run-bad" and q.sample_ids == tuple(range(10, 20))
    assert "events.arrow has 2000 bytes" in q.reason and Path(q.path).is_dir()
    again = try_ingest(warehouse_path)  # nothing is retried: the shard is out of the way
    assert again is not None and again.quarantined == () and again.shards == 0
    capsys.readouterr()
    assert warehouse_main(["status", "--warehouse", str(warehouse_path)]) == 0
    out = capsys.readouterr().out
    assert "quarantine: 1 shard(s)" in out and "events.arrow has 2000 bytes" in out
    assert "python -m collector.run --resume " in out and "10 of 30 samples are missing" in out


def test_bytes_overwritten_inside_a_shard_fail_its_checksum(warehouse_path: Path) -> None:
    writer = _stage(warehouse_path, "run-x", shards=2)
    events = writer.run_dir / "batch-00000000" / EVENTS_FILE
    with open(events, "r+b") as fh:
        fh.seek(events.stat().st_size // 2)
        fh.write(b"\xff" * 64)
    report = try_ingest(warehouse_path)
    assert report is not None and report.shards == 1
    assert "does not match its SHA-256 checksum" in report.quarantined[0].reason
    assert _runs(warehouse_path)["run-x"][:2] == ("failed", 10)
    with duckdb.connect(str(warehouse_path), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM token_events WHERE token_id < 0").fetchall() == [(0,)]


def test_quarantined_samples_are_collected_again_on_resume(warehouse_path: Path) -> None:
    """`written.txt` strikes the quarantined ids, so a resume's `done` set leaves them to be collected."""
    writer = _stage(warehouse_path, "run-r", shards=3, final=False)
    assert staged_sample_ids(writer.run_dir) == set(range(30))
    with open(writer.run_dir / "batch-00000020" / EVENTS_FILE, "r+b") as fh:
        fh.truncate(100)
    try_ingest(warehouse_path)
    assert staged_sample_ids(writer.run_dir) == set(range(20))
    rng = np.random.default_rng(1)  # what a resume writes: the missing samples again, then the final record
    writer.write_batch(20, synthetic_samples(range(20, 30)), synthetic_events(1000, 20, rng))
    writer.write_final(RunFinal("complete", "2026-01-01T00:00:00", 1.0, 1.0))
    try_ingest(warehouse_path)
    assert _runs(warehouse_path)["run-r"] == ("complete", 30, None)


def test_unreadable_manifest_quarantines_the_run_alone(warehouse_path: Path) -> None:
    writer = _stage(warehouse_path, "run-m", shards=1)
    (writer.run_dir / "run.json").write_text("{ not json")
    _stage(warehouse_path, "run-ok", shards=1)
    report = try_ingest(warehouse_path)
    assert report is not None and report.runs_finished == 1
    assert [q.shard for q in report.quarantined] == ["(whole run)"]
    assert "run.json cannot be read" in report.quarantined[0].reason
    assert list(_runs(warehouse_path)) == ["run-ok"]


def test_api_ingester_logs_a_bad_shard_once(warehouse_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    writer = _stage(warehouse_path, "run-api", shards=2, final=False)
    with open(writer.run_dir / "batch-00000000" / EVENTS_FILE, "r+b") as fh:
        fh.truncate(2000)
    con = duckdb.connect(str(warehouse_path))
    try:
        ingester = BackgroundIngester(con.cursor, warehouse_path, 0.01)
        with caplog.at_level(logging.WARNING, logger="fsgen.api.ingester"):
            for _ in range(5):
                ingester.ingest_once()
    finally:
        con.close()
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "quarantined" in warnings[0].getMessage()
    assert ingester.total.shards == 1


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _beat(writer: StagingWriter, pid: int, host: str, at: float) -> None:
    beat = {"pid": pid, "host": host, "pid_start": None, "at": at}
    (writer.run_dir / HEARTBEAT).write_text(json.dumps(beat))


def test_a_dead_collectors_run_is_stale_with_the_resume_command(
    warehouse_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    writer = _stage(warehouse_path, "run-dead", shards=1, final=False)
    try_ingest(warehouse_path)
    here = socket.gethostname()
    assert run_liveness(warehouse_path, "run-dead").state == "live"  # this process wrote the heartbeat
    _beat(writer, _dead_pid(), here, time.time())
    live = run_liveness(warehouse_path, "run-dead")
    assert live.state == "stale" and "that process is gone" in live.detail
    assert live.resume == f"python -m collector.run --resume run-dead --warehouse {warehouse_path}"
    assert displayed_status(warehouse_path, "run-dead", "running") == "stale"
    assert displayed_status(warehouse_path, "run-dead", "complete") == "complete"
    capsys.readouterr()
    warehouse_main(["status", "--warehouse", str(warehouse_path)])
    out = capsys.readouterr().out
    assert "run 1 (run-dead): stale" in out and live.resume in out


def test_another_hosts_collector_is_stale_only_after_a_silence(warehouse_path: Path) -> None:
    writer = _stage(warehouse_path, "run-far", shards=1, final=False)
    _beat(writer, 1, "some-other-host", time.time() - 60)
    assert run_liveness(warehouse_path, "run-far").state == "live"
    _beat(writer, 1, "some-other-host", time.time() - STALE_AFTER_S - 1)
    assert run_liveness(warehouse_path, "run-far").state == "stale"


def test_a_finished_run_waiting_for_ingest_is_not_stale(warehouse_path: Path) -> None:
    writer = _stage(warehouse_path, "run-fin", shards=1, final=True)
    _beat(writer, _dead_pid(), socket.gethostname(), time.time())
    assert run_liveness(warehouse_path, "run-fin").state == "finishing"


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 16 MB tmpfs (needs root and mount; skipped elsewhere: the collector's test simulates a full disk)."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mnt)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=True)


def test_ingest_on_a_full_disk_says_so_and_keeps_the_shards(
    small_disk: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = small_disk / "fsgen.duckdb"
    upgrade(path)
    _stage(path, "run-full", shards=2)
    free = shutil.disk_usage(small_disk).free
    (small_disk / "filler").write_bytes(b"\0" * (free - 4096))
    capsys.readouterr()
    assert warehouse_main(["ingest", "--warehouse", str(path)]) == 2
    err = capsys.readouterr().err
    assert "is full" in err and "No space left on device" in err and "the shards stay staged" in err
    assert len(list(staging_dir(path).glob("*/batch-*"))) == 2
    (small_disk / "filler").unlink()
    report = try_ingest(path)
    assert report is not None and report.shards == 2
    assert _runs(path)["run-full"] == ("complete", 20, None)


HOLD = "import duckdb, time; c = duckdb.connect({path!r}); print('x', flush=True); time.sleep(60)"


def test_status_and_upgrade_while_another_process_holds_the_file(
    warehouse_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _stage(warehouse_path, "run-held", shards=1, final=False)
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD.format(path=str(warehouse_path))], stdout=subprocess.PIPE
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == b"x"
        capsys.readouterr()
        assert warehouse_main(["status", "--warehouse", str(warehouse_path)]) == 0
        out = capsys.readouterr().out
        assert "another process holds the file" in out and "staged    : 1 shard(s)" in out
        assert "run run-held (not ingested yet): live" in out
        assert warehouse_main(["upgrade", "--warehouse", str(warehouse_path)]) == 2
        assert "is open in another process" in capsys.readouterr().err
    finally:
        holder.kill()
        holder.wait()
