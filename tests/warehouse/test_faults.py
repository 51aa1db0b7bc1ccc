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
import pyarrow as pa
import pyarrow.compute
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
    assert "is full" in err and "No space left on device" in err and "was not committed" in err
    assert "its shards stay staged (0 shard(s) committed before it" in err
    assert len(list(staging_dir(path).glob("*/batch-*"))) == 2
    (small_disk / "filler").unlink()
    report = try_ingest(path)
    assert report is not None and report.shards == 2
    assert _runs(path)["run-full"] == ("complete", 20, None)


def _stage_big(path: Path, run_key: str, events_per_shard: int) -> None:
    writer = StagingWriter(staging_dir(path), run_key)
    writer.write_manifest(replace(manifest(run_key), n_samples=20))
    rng = np.random.default_rng(0)
    for i in range(2):
        ids = range(i * 10, i * 10 + 10)
        writer.write_batch(i * 10, synthetic_samples(ids), synthetic_events(events_per_shard, i * 10, rng))
    writer.write_final(RunFinal("complete", "2026-01-01T00:00:00", 1.0, 1.0))


def test_a_checkpoint_that_fills_the_disk_says_the_commit_reached_the_log(
    small_disk: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Room for the commit's write-ahead log, not for the checkpoint after it: the shards are committed
    (and gone from staging), and the message says so; once space returns the log is replayed, nothing lost
    and nothing twice."""
    path = small_disk / "fsgen.duckdb"
    upgrade(path)
    _stage_big(path, "run-wal", 20_000)
    free = shutil.disk_usage(small_disk).free
    (small_disk / "filler").write_bytes(b"\0" * (free - 3_500_000))  # the log fits (~2.6 MB), blocks don't
    capsys.readouterr()
    assert warehouse_main(["ingest", "--warehouse", str(path)]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert (
        "is full" in err
        and "every shard committed (2 since the last checkpoint) is in the write-ahead log" in err
    )
    assert "(CHECKPOINT) failed" in err and "nothing is lost while fsgen.duckdb.wal is kept" in err
    assert not list(staging_dir(path).glob("*/batch-*"))  # committed, so removed: as the message says
    (small_disk / "filler").unlink()
    assert try_ingest(path) is not None
    assert _runs(path)["run-wal"] == ("complete", 20, None)


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


def test_a_shard_of_other_arrow_types_is_cast_or_quarantined_and_blocks_no_other_run(
    warehouse_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Checksums fine, types not the staging schema (as another fsgen version might stage): int64 and
    float64 columns are cast where every value fits; text where a number belongs is quarantined with the
    reason; the runs sorted after it are ingested all the same."""
    rng = np.random.default_rng(2)
    wide = _writer(warehouse_path, "a-wide")
    events = synthetic_events(1000, 0, rng)
    wide_events = events.cast(pa.schema([f.with_type(_wider(f.type)) for f in events.schema]))
    wide.write_batch(0, synthetic_samples(range(10)), wide_events)
    wide.write_final(RunFinal("complete", "2026-01-01T00:00:00", 1.0, 1.0))
    text = _writer(warehouse_path, "b-text")
    bad = events.set_column(3, "token_id", pa.array([f"t{i}" for i in range(events.num_rows)]))
    text.write_batch(0, synthetic_samples(range(10)), bad)
    text.write_final(RunFinal("complete", "2026-01-01T00:00:00", 1.0, 1.0))
    _stage(warehouse_path, "c-good", shards=1)
    report = try_ingest(warehouse_path)
    assert report is not None and report.shards == 2 and len(report.quarantined) == 1
    runs = _runs(warehouse_path)
    assert runs["a-wide"] == ("complete", 10, None) and runs["c-good"] == ("complete", 10, None)
    assert runs["b-text"][:2] == ("failed", 0)
    (q,) = quarantined_shards(staging_dir(warehouse_path))
    assert q.run_key == "b-text" and "column 'token_id' is string; table token_events needs int32" in q.reason
    with duckdb.connect(str(warehouse_path), read_only=True) as con:
        got = con.execute("SELECT sum(s1_prob), count(*) FROM token_events WHERE run_id = 1").fetchone()
    assert got is not None and got[1] == 1000
    assert got[0] == pytest.approx(float(pa.compute.sum(events.column("s1_prob")).as_py()), rel=1e-5)
    capsys.readouterr()
    warehouse_main(["status", "--warehouse", str(warehouse_path)])
    assert "its columns do not fit the warehouse" in capsys.readouterr().out


def _writer(path: Path, run_key: str) -> StagingWriter:
    """A staged run of 10 samples, its shards written by the test."""
    writer = StagingWriter(staging_dir(path), run_key)
    writer.write_manifest(replace(manifest(run_key), n_samples=10))
    return writer


def _wider(t: pa.DataType) -> pa.DataType:
    """int32 -> int64, float32 -> float64: what a version staging wider types would write."""
    return pa.int64() if t == pa.int32() else pa.float64() if t == pa.float32() else t


def test_a_value_that_does_not_fit_is_quarantined_with_the_reason(warehouse_path: Path) -> None:
    rng = np.random.default_rng(3)
    writer = _writer(warehouse_path, "run-big")
    events = synthetic_events(1000, 0, rng)
    big = events.set_column(0, "sample_id", pa.array([2**40] * events.num_rows, pa.int64()))
    writer.write_batch(0, synthetic_samples(range(10)), big)
    report = try_ingest(warehouse_path)
    assert report is not None and report.shards == 0
    assert "values that do not fit int32" in report.quarantined[0].reason


KILLED_BEFORE_CHECKPOINT = """
import os, sys
from pathlib import Path
import duckdb
from api.ingester import BackgroundIngester
path = Path(sys.argv[1])
ingester = BackgroundIngester(duckdb.connect(str(path)).cursor, path, 0.01, checkpoint_interval_s=3600)
report = ingester.ingest_once()
print(report.shards, path.with_name(path.name + ".wal").stat().st_size, flush=True)
os._exit(0)  # killed: no checkpoint, no close
"""


def test_the_server_folds_the_log_when_due_and_a_kill_before_it_loses_nothing(warehouse_path: Path) -> None:
    wal = warehouse_path.with_name(warehouse_path.name + ".wal")
    _stage(warehouse_path, "run-kill", shards=3)
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run(
        [sys.executable, "-c", KILLED_BEFORE_CHECKPOINT, str(warehouse_path)],
        cwd=root, capture_output=True, text=True, check=True, timeout=120,
    )  # fmt: skip
    shards, wal_bytes = map(int, done.stdout.split())
    assert shards == 3 and wal_bytes > 0  # committed into the log only, and the staged shards removed
    assert not list(staging_dir(warehouse_path).glob("*/batch-*"))
    assert _runs(warehouse_path)["run-kill"] == ("complete", 30, None)  # the log replayed on opening
    _stage(warehouse_path, "run-later", shards=2)
    con = duckdb.connect(str(warehouse_path))
    try:
        wal_size = lambda: wal.stat().st_size if wal.exists() else 0  # noqa: E731
        con.execute("CHECKPOINT")
        ingester = BackgroundIngester(con.cursor, warehouse_path, 0.01, checkpoint_interval_s=3600)
        assert ingester.ingest_once().shards == 2 and wal_size() > 0  # not due: still in the log
        ingester.stop()  # never started; stopping folds the log in
        assert wal_size() == 0
        _stage(warehouse_path, "run-every-pass", shards=1)
        every = BackgroundIngester(con.cursor, warehouse_path, 0.01)  # interval 0: after each pass
        assert every.ingest_once().shards == 1 and wal_size() == 0
    finally:
        con.close()
    assert _runs(warehouse_path)["run-later"] == ("complete", 20, None)
