"""Staged shards: the collector's write path, readable by whichever process ingests.

Layout, next to the warehouse file (`fsgen.duckdb.staging/`):

    <run_key>/run.json                         run manifest (settings, models), written first
    <run_key>/heartbeat.json                   the collector's PID and host, rewritten with every shard
    <run_key>/batch-<first_sample_id>/         one finished batch, renamed into place when complete
        samples.arrow, events.arrow[, cycles.arrow for speculative decoding]   (Arrow IPC files)
        checksums.json                         SHA-256 and size of each file, verified before ingest
    <run_key>/written.txt                      sample ids of every staged shard, one line per shard
    <run_key>/final.json                       the run's outcome, written last
    <run_key>/registered.json                  the run's id, once the warehouse knows the run
    <run_key>/ended.json                       a failed run's outcome once ingested (its folder is kept)
    <run_key>.lock                             flock-held by the one process collecting the run
    .quarantine/<run_key>/batch-.../           a shard that failed to read or verify, with reason.json

Every file is written under a temporary name and renamed, so a reader never sees half a shard. Shards are
Arrow IPC files: the ingester memory-maps them and hands them to DuckDB as Arrow without decoding (Parquet
shards cost more to read back than DuckDB takes to insert them). `python -m warehouse export` writes Parquet.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import shutil
import socket
import tempfile
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa

from warehouse.catalogue import EVENT_SCHEMA, SAMPLE_SCHEMA, required_columns
from warehouse.db import WarehouseError
from warehouse.shard_schema import ShardSchemaError, conform

MANIFEST = "run.json"
WRITTEN = "written.txt"  # sample ids of every shard this run has staged, ingested or not (for resume)
FINAL = "final.json"
BATCH_PREFIX = "batch-"
SAMPLES_FILE = "samples.arrow"
EVENTS_FILE = "events.arrow"
CYCLES_FILE = "cycles.arrow"
CHECKSUMS_FILE = "checksums.json"
HEARTBEAT = "heartbeat.json"
REGISTERED = "registered.json"  # {"run_id": N}: written by the ingester once the warehouse knows the run
ENDED = "ended.json"  # a failed run's final record once ingested: its folder stays, so it can be resumed
LOCK_SUFFIX = ".lock"  # <staging>/<run_key>.lock: held (flock) by the one process collecting the run
QUARANTINE = ".quarantine"  # under the staging root; dot-named, so the ingester never walks it
QUARANTINED_PREFIX = "q:"  # a `written.txt` line whose ids were quarantined, hence not committed
DISK_FULL = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})


class StagingFull(WarehouseError):
    """The staging folder's disk (or a file-size limit) ran out while writing a shard."""


@contextmanager
def disk_full_is_user_error(where: Path) -> Iterator[None]:
    """Turn a full disk (or a file-size limit) into StagingFull, whose message says what to do."""
    try:
        yield
    except OSError as exc:
        if exc.errno not in DISK_FULL:
            raise
        raise StagingFull(
            f"no space left to stage under {where} ({exc.strerror or exc}); nothing half-written was kept. "
            "Free some disk space (or point --warehouse at a bigger disk), then run again; a run that had "
            "started continues with --resume (see: python -m warehouse status)"
        ) from exc


def write_arrow(table: pa.Table, path: Path) -> None:
    """One Arrow IPC file (uncompressed: staging is transient, reading it back is a memory map)."""
    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)


def read_arrow(path: Path, columns: list[str] | None = None) -> pa.Table:
    """An Arrow IPC file, memory-mapped."""
    with pa.memory_map(str(path)) as source:
        table = pa.ipc.open_file(source).read_all()
    return table.select(columns) if columns else table


@dataclass(frozen=True)
class ModelInfo:
    """A model as the warehouse records it."""

    name: str
    path: str
    params: int
    architecture: str | None = None
    vocab_size: int | None = None
    source: str | None = None  # the GGUF file (or the recipe) a model's weights came from
    quantization: str | None = None  # e.g. "Q4_1" (GGUF), "rtn4 g32" (a built draft)


@dataclass(frozen=True)
class RunManifest:
    """Everything the `runs` row holds that is known when the run starts."""

    run_key: str
    created_at: str
    llm: str
    slm: str
    method: str
    router: str
    dataset: str
    n_samples: int
    seed: int
    temperature: float
    top_p: float
    device: str
    dtype: str
    settings: dict[str, Any]
    models: tuple[ModelInfo, ...] = field(metadata={"runs_column": False})  # rows of `models`
    slm_tuned: str | None = None
    threshold: float | None = None
    experiment: str | None = "default"  # the named set of runs it belongs to
    # hashes of the settings that define the run, with and without the pair (collector.config.run_identity)
    identity: str | None = None
    setup: str | None = None

    @staticmethod
    def from_json(data: dict[str, Any]) -> RunManifest:
        """Parse a manifest written by `StagingWriter.write_manifest`."""
        models = tuple(ModelInfo(**m) for m in data.pop("models"))
        return RunManifest(models=models, **data)


@dataclass(frozen=True)
class RunFinal:
    """How a run ended; `status` is 'complete' or 'failed'."""

    status: str
    finished_at: str
    wall_s: float
    tokens_per_s: float
    error: str | None = field(default=None)
    # measured costs (rows of run_costs without run_id: kind, tokens, batch_size, seconds)
    costs: list[dict[str, Any]] = field(default_factory=list)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write under a temporary name, fsync, rename; on failure the temporary file is removed."""
    with disk_full_is_user_error(path.parent):
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=path.suffix)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


def file_digest(path: Path) -> str:
    """SHA-256 of a file, hex."""
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def write_checksums(shard: Path) -> None:
    """checksums.json: the SHA-256 and size of every Arrow file of a shard."""
    sums = {
        f.name: {"sha256": file_digest(f), "bytes": f.stat().st_size} for f in sorted(shard.glob("*.arrow"))
    }
    (shard / CHECKSUMS_FILE).write_text(json.dumps(sums, indent=1))


def verify_shard(shard: Path) -> str | None:
    """Why a shard cannot be ingested (checksum, size, unreadable or wrong schema), None if it is sound."""
    try:
        sums = json.loads((shard / CHECKSUMS_FILE).read_text())
    except (OSError, ValueError) as exc:
        return f"{CHECKSUMS_FILE} is missing or unreadable ({exc})"
    for name in (SAMPLES_FILE, EVENTS_FILE):
        if name not in sums:
            return f"{CHECKSUMS_FILE} does not list {name}"
    for name, want in sums.items():
        path = shard / name
        if not path.exists():
            return f"{name} is missing"
        size = path.stat().st_size
        if size != want["bytes"]:
            return f"{name} has {size} bytes, its checksum was taken over {want['bytes']} (truncated?)"
        if file_digest(path) != want["sha256"]:
            return f"{name} does not match its SHA-256 checksum (the file changed after it was staged)"
    return _schema_problem(shard)


# The table each staged file lands in.
TABLE_OF_FILE = {SAMPLES_FILE: "samples", EVENTS_FILE: "token_events", CYCLES_FILE: "spec_cycles"}
# The columns a shard must have: the NOT NULL ones (a shard staged before a nullable column existed lacks it).
REQUIRED = {SAMPLES_FILE: required_columns(SAMPLE_SCHEMA), EVENTS_FILE: required_columns(EVENT_SCHEMA)}


def read_shard_file(shard: Path, name: str) -> pa.Table:
    """A shard's Arrow file with every column cast to its table's type (ShardSchemaError if one cannot)."""
    return conform(read_arrow(shard / name), TABLE_OF_FILE[name], name)


def _schema_problem(shard: Path) -> str | None:
    """Why the shard's Arrow files cannot be read as its tables' rows, None if they can."""
    names = [n for n in TABLE_OF_FILE if n in REQUIRED or (shard / n).exists()]
    try:
        tables = {n: read_shard_file(shard, n) for n in names}
    except (OSError, pa.ArrowException) as exc:
        return f"cannot read the shard as Arrow IPC ({type(exc).__name__}: {exc})"
    except ShardSchemaError as exc:
        return f"its columns do not fit the warehouse: {exc}"
    for name, required in REQUIRED.items():
        missing = [c for c in required if c not in tables[name].column_names]
        if missing:
            return f"{name} lacks columns {missing}"
    return None


class StagingWriter:
    """Writes one run's shards; each batch appears whole or not at all."""

    def __init__(self, staging_root: Path, run_key: str) -> None:
        self.run_dir = staging_root / run_key
        with disk_full_is_user_error(staging_root):
            self.run_dir.mkdir(parents=True, exist_ok=True)

    def write_manifest(self, manifest: RunManifest) -> None:
        """Write run.json (idempotent: a resumed run rewrites the same content) and the first heartbeat."""
        for name in (FINAL, ENDED):  # a resumed run is not finished until it says so
            (self.run_dir / name).unlink(missing_ok=True)
        payload = asdict(manifest)
        try:
            atomic_write_bytes(self.run_dir / MANIFEST, json.dumps(payload, indent=1).encode())
        except StagingFull:
            if not any(self.run_dir.iterdir()):
                self.run_dir.rmdir()  # nothing of the run was staged: leave no empty run behind
            raise
        self.beat()

    def beat(self) -> None:
        """Rewrite heartbeat.json: this process is alive and collecting this run."""
        atomic_write_bytes(self.run_dir / HEARTBEAT, json.dumps(own_heartbeat()).encode())

    def write_batch(
        self, first_sample_id: int, samples: pa.Table, events: pa.Table, cycles: pa.Table | None = None
    ) -> Path:
        """Write a finished batch as a shard folder with its checksums, renamed into place when complete."""
        final = self.run_dir / f"{BATCH_PREFIX}{first_sample_id:08d}"
        missing = set(REQUIRED[EVENTS_FILE]) - set(events.column_names)
        if missing:
            raise ValueError(f"event batch lacks columns {sorted(missing)}")  # a bug in the caller
        with disk_full_is_user_error(self.run_dir):
            tmp = Path(tempfile.mkdtemp(dir=self.run_dir, prefix=".tmp-batch-"))
            try:
                write_arrow(samples.cast(SAMPLE_SCHEMA), tmp / SAMPLES_FILE)
                write_arrow(events, tmp / EVENTS_FILE)
                if cycles is not None:
                    write_arrow(cycles, tmp / CYCLES_FILE)
                write_checksums(tmp)
                os.replace(tmp, final)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
        self._append_written(",".join(str(i) for i in samples.column("sample_id").to_pylist()))
        self.beat()
        return final

    def _append_written(self, line: str) -> None:
        with disk_full_is_user_error(self.run_dir), open(self.run_dir / WRITTEN, "a") as fh:
            fh.write(line + "\n")
            fh.flush()
            os.fsync(fh.fileno())

    def write_final(self, final: RunFinal) -> None:
        """Write final.json: the ingester marks the run finished once every batch is in."""
        atomic_write_bytes(self.run_dir / FINAL, json.dumps(asdict(final)).encode())


def strike_written(run_dir: Path, ids: Iterable[int]) -> None:
    """Strike sample ids from `written.txt` (quarantined, or lost by the warehouse): resume collects them."""
    with open(run_dir / WRITTEN, "a") as fh:
        fh.write(QUARANTINED_PREFIX + ",".join(str(i) for i in sorted(ids)) + "\n")


def registered_run_id(run_dir: Path) -> int | None:
    """The run id the ingester recorded in the folder, None before the warehouse knows the run."""
    try:
        return int(json.loads((run_dir / REGISTERED).read_text())["run_id"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def read_manifest(run_dir: Path) -> RunManifest | None:
    """The manifest of a staged run, None if it is not written yet."""
    path = run_dir / MANIFEST
    return RunManifest.from_json(json.loads(path.read_text())) if path.exists() else None


def read_final(run_dir: Path) -> RunFinal | None:
    """The final record of a staged run, None while it runs."""
    path = run_dir / FINAL
    return RunFinal(**json.loads(path.read_text())) if path.exists() else None


def batch_dirs(run_dir: Path) -> list[Path]:
    """Finished batch shards of a staged run, oldest first."""
    return sorted(p for p in run_dir.glob(f"{BATCH_PREFIX}*") if p.is_dir())


def staged_run_dirs(root: Path) -> list[Path]:
    """The staged runs' folders under a staging root (the quarantine and leftovers are dot-named)."""
    if not root.exists():
        return []
    return sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))


def staged_shard_count(root: Path) -> int:
    """Finished shards waiting under a staging root to be ingested."""
    return sum(len(batch_dirs(d)) for d in staged_run_dirs(root))


def written_sample_ids(run_dir: Path) -> set[int]:
    """Sample ids that `written.txt` says are staged: every shard's line, less the quarantined ones."""
    ids: set[int] = set()
    written = run_dir / WRITTEN
    if not written.exists():
        return ids
    for line in written.read_text().splitlines():
        quarantined = line.startswith(QUARANTINED_PREFIX)
        values = {int(v) for v in line.removeprefix(QUARANTINED_PREFIX).split(",") if v}
        ids = ids - values if quarantined else ids | values
    return ids


def shard_sample_ids(run_dir: Path) -> set[int]:
    """Sample ids of the shards still on disk (staged, not yet ingested)."""
    ids: set[int] = set()
    for shard in batch_dirs(run_dir):
        # A shard without its samples file lost it to a removal cut short after ingest: `written` has its ids.
        if (shard / SAMPLES_FILE).exists():
            try:
                column = read_arrow(shard / SAMPLES_FILE, ["sample_id"])["sample_id"]
            except (OSError, pa.ArrowException):
                continue  # unreadable: the ingester will quarantine it, and its samples are collected again
            ids.update(int(v) for v in column.to_pylist())
    return ids


def staged_sample_ids(run_dir: Path) -> set[int]:
    """Sample ids of every shard this run has staged, whether or not it has been ingested since."""
    return written_sample_ids(run_dir) | shard_sample_ids(run_dir)


def own_heartbeat() -> dict[str, Any]:
    """This process as a heartbeat records it: PID, host, start time of the PID (Linux), and now."""
    return {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "pid_start": pid_start(os.getpid()),
        "at": time.time(),
    }


def pid_start(pid: int) -> str | None:
    """The start time of a process in clock ticks since boot (tells a reused PID apart); None if unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]  # field 22 of proc(5), counted after the command name


class RunBusy(WarehouseError):
    """Another process is collecting (or resuming) this run right now."""


def lock_path(staging_root: Path, run_key: str) -> Path:
    """The lock file beside a run's staging folder."""
    return staging_root / f"{run_key}{LOCK_SUFFIX}"


def lock_holder(staging_root: Path, run_key: str) -> str | None:
    """Who holds a run's lock ("PID n on host since ..."), None when nobody does."""
    path = lock_path(staging_root, run_key)
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return _holder_text(path)
    finally:
        os.close(fd)  # closing releases a shared lock taken just to test
    return None


def _holder_text(path: Path) -> str:
    try:
        beat = json.loads(path.read_text())
        since = time.strftime("%H:%M:%S", time.localtime(float(beat["at"])))
        return f"PID {beat['pid']} on {beat['host']} since {since}"
    except (OSError, ValueError, KeyError, TypeError):
        return "another process"


@contextmanager
def run_lock(staging_root: Path, run_key: str) -> Iterator[None]:
    """Hold the run's lock while collecting it: one process per run; the kernel releases it at death."""
    path = lock_path(staging_root, run_key)
    with disk_full_is_user_error(staging_root):
        staging_root.mkdir(parents=True, exist_ok=True)
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise RunBusy(
                f"run {run_key} is being collected by {_holder_text(path)} (it holds {path}); wait for it to "
                "finish, or stop that process, then resume"
            ) from None
        if path.exists() and os.stat(path).st_ino == os.fstat(fd).st_ino:
            break  # else a holder unlinked it as we waited: lock the file that is there now
        os.close(fd)
    try:
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps(own_heartbeat()).encode())
        yield
    finally:
        path.unlink(missing_ok=True)  # while still held: a waiter then locks a new file, never a stale one
        os.close(fd)
