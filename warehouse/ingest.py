"""Idempotent ingest of staged shards: one short transaction per shard, recorded in a ledger."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from dataclasses import dataclass, fields
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from warehouse.db import WarehouseError, WarehouseLocked, open_duckdb, warehouse_error_of
from warehouse.migrate import require_head
from warehouse.quarantine import QuarantinedShard, quarantine_root, quarantine_run, quarantine_shard
from warehouse.settings import staging_dir
from warehouse.shard_schema import ShardSchemaError
from warehouse.staging import (
    CYCLES_FILE,
    ENDED,
    EVENTS_FILE,
    FINAL,
    REGISTERED,
    SAMPLES_FILE,
    RunFinal,
    RunManifest,
    StagingFull,
    atomic_write_bytes,
    batch_dirs,
    read_final,
    read_manifest,
    read_shard_file,
    registered_run_id,
    shard_sample_ids,
    staged_run_dirs,
    verify_shard,
    written_sample_ids,
)
from warehouse.summaries import accumulate_arrow


@dataclass(frozen=True)
class IngestReport:
    """What one ingest pass moved into the warehouse."""

    shards: int = 0
    events: int = 0
    samples: int = 0
    runs_started: int = 0  # runs registered from their manifest in this pass
    runs_finished: int = 0
    quarantined: tuple[QuarantinedShard, ...] = ()  # shards moved aside in this pass
    runs: tuple[int, ...] = ()  # ids of the runs this pass wrote (registered, shards in, finished)

    def __add__(self, other: IngestReport) -> IngestReport:
        return IngestReport(
            self.shards + other.shards,
            self.events + other.events,
            self.samples + other.samples,
            self.runs_started + other.runs_started,
            self.runs_finished + other.runs_finished,
            self.quarantined + other.quarantined,
            self.runs + other.runs,
        )

    @property
    def writes(self) -> int:
        """How many times the pass changed the warehouse (runs registered, shards in, runs finished)."""
        return self.runs_started + self.shards + self.runs_finished


def new_run_row(manifest: RunManifest) -> dict[str, Any]:
    """The `runs` row of a new run: each of the manifest's column fields, as the table stores it."""
    # A field left None takes the column's default (NULL; `default` for the experiment).
    row = {
        f.name: getattr(manifest, f.name)
        for f in fields(manifest)
        if f.metadata.get("runs_column", True) and getattr(manifest, f.name) is not None
    }
    row["created_at"] = datetime.fromisoformat(manifest.created_at)
    row["settings"] = json.dumps(manifest.settings, sort_keys=True)
    row["status"] = "running"
    return row


def ensure_run(con: duckdb.DuckDBPyConnection, manifest: RunManifest) -> int:
    """The run_id of a manifest's run, registering the run and its models on first sight."""
    return _ensure_run(con, manifest)[0]


def _ensure_run(con: duckdb.DuckDBPyConnection, manifest: RunManifest) -> tuple[int, bool]:
    """(run_id, registered now) of a manifest's run."""
    row = con.execute("SELECT run_id FROM runs WHERE run_key = ?", [manifest.run_key]).fetchone()
    if row is not None:
        return int(row[0]), False
    now = datetime.now()
    con.execute("BEGIN TRANSACTION")
    for m in manifest.models:
        con.execute(
            "INSERT INTO models (name, path, params, architecture, vocab_size, source, quantization, "
            "created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            [m.name, m.path, m.params, m.architecture, m.vocab_size, m.source, m.quantization, now],
        )
    new = new_run_row(manifest)
    inserted = con.execute(  # column names come from RunManifest's fields, never from input
        f"INSERT INTO runs ({', '.join(new)}) VALUES ({', '.join('?' * len(new))}) RETURNING run_id",
        list(new.values()),
    ).fetchone()
    con.execute("COMMIT")
    assert inserted is not None
    return int(inserted[0]), True


def insert_arrow(con: duckdb.DuckDBPyConnection, table: str, run_id: int, data: pa.Table) -> None:
    """Append an Arrow table to `table` with run_id set (columns matched by name); caller owns the txn."""
    view = f"fsgen_batch_{table}"
    con.register(view, data)
    try:
        con.execute(
            f"INSERT INTO {table} BY NAME SELECT CAST(? AS BIGINT) AS run_id, * FROM {view}", [run_id]
        )
    except BaseException:
        with contextlib.suppress(
            duckdb.Error
        ):  # an aborted transaction refuses this too: keep the real error
            con.unregister(view)
        raise
    con.unregister(view)


def insert_batch(con: duckdb.DuckDBPyConnection, run_id: int, samples: pa.Table, events: pa.Table) -> None:
    """Append one batch's samples and token events as Arrow; the caller owns the transaction."""
    insert_arrow(con, "samples", run_id, samples)
    insert_arrow(con, "token_events", run_id, events)


# Many small shards go in one transaction (still all-or-nothing, ledger included): per-commit cost dominates
# for collector batches of a few thousand events.
GROUP_BYTES = 512 * 2**20  # about 10M events per transaction at most
GROUP_SHARDS = 512


def remove_dir(path: Path) -> None:
    """Remove a folder atomically for readers: renamed out of sight first, then deleted."""
    hidden = path.with_name(f".del-{path.name}")
    os.replace(path, hidden)
    shutil.rmtree(hidden)


def _shard_key(shard_dir: Path) -> str:
    return f"{shard_dir.parent.name}/{shard_dir.name}"


def _read_each(shards: list[Path], name: str) -> list[pa.Table]:
    return [read_shard_file(s, name) for s in shards]


def _concat(tables: list[pa.Table]) -> pa.Table:
    return pa.concat_tables(tables, promote_options="default")


def ingest_group(
    con: duckdb.DuckDBPyConnection, run_id: int, shards: list[Path], *, remove: bool = True
) -> IngestReport:
    """Ingest shards in one transaction, with their ledger rows; folders are removed only after commit."""
    sample_parts = _read_each(shards, SAMPLES_FILE)
    event_parts = _read_each(shards, EVENTS_FILE)
    samples, events = _concat(sample_parts), _concat(event_parts)
    cycles = [s for s in shards if (s / CYCLES_FILE).exists()]
    ledger = pa.table(
        {
            "shard": [_shard_key(s) for s in shards],
            "events": [t.num_rows for t in event_parts],
            "samples": [t.num_rows for t in sample_parts],
            "ingested_at": [datetime.now()] * len(shards),
        }
    )
    con.execute("BEGIN TRANSACTION")
    try:
        insert_batch(con, run_id, samples, events)
        accumulate_arrow(con, run_id, events)  # summary tables, in the shard's own transaction
        if cycles:
            insert_arrow(con, "spec_cycles", run_id, _concat(_read_each(cycles, CYCLES_FILE)))
        insert_arrow(con, "ingested_shards", run_id, ledger)
        con.execute("COMMIT")
    except BaseException:
        with contextlib.suppress(duckdb.Error):  # a failed COMMIT leaves no transaction: keep the real error
            con.execute("ROLLBACK")
        raise
    if remove:
        for shard in shards:
            remove_dir(shard)
    return IngestReport(shards=len(shards), events=events.num_rows, samples=samples.num_rows)


def _unledgered(con: duckdb.DuckDBPyConnection, shards: list[Path], *, remove: bool = True) -> list[Path]:
    """Shards not in the ledger; ledgered ones (committed before a crash left their folder) are removed."""
    keys = [_shard_key(s) for s in shards]
    query = "SELECT shard FROM ingested_shards WHERE shard IN (SELECT unnest(?))"
    done = {r[0] for r in con.execute(query, [keys]).fetchall()}
    for shard, key in zip(shards, keys, strict=True):
        if key in done and remove:
            remove_dir(shard)
    return [s for s, k in zip(shards, keys, strict=True) if k not in done]


def _sound(shards: list[Path]) -> tuple[list[Path], tuple[QuarantinedShard, ...]]:
    """Shards that verify, and the ones that did not, moved to quarantine with their reason."""
    good, bad = [], []
    for shard in shards:
        reason = verify_shard(shard)
        if reason is None:
            good.append(shard)
        else:
            bad.append(quarantine_shard(shard, reason))
    return good, tuple(bad)


def _pending_groups(shards: list[Path]) -> list[list[Path]]:
    """Shards in groups bounded by size on disk and by count."""
    groups: list[list[Path]] = [[]]
    size = 0
    for shard in shards:
        nbytes = (shard / EVENTS_FILE).stat().st_size
        if groups[-1] and (size + nbytes > GROUP_BYTES or len(groups[-1]) >= GROUP_SHARDS):
            groups.append([])
            size = 0
        groups[-1].append(shard)
        size += nbytes
    return [g for g in groups if g]


# What a shard's own content can raise on its way in (its columns verified, yet DuckDB refuses a value):
# that shard is quarantined, never the pass stopped.
SHARD_FAULTS = (
    pa.ArrowException,
    ShardSchemaError,
    duckdb.ConversionException,
    duckdb.TypeMismatchException,
    duckdb.BinderException,
    duckdb.InvalidInputException,
)


@dataclass
class IngestPass:
    """What a pass has committed so far (kept when it fails half-way, to say what really happened)."""

    report: IngestReport = IngestReport()

    def add(self, report: IngestReport) -> None:
        self.report = self.report + report


def _ingest_groups(
    con: duckdb.DuckDBPyConnection, run_id: int, groups: list[list[Path]], done: IngestPass, remove: bool
) -> None:
    """Each group in its transaction; a group that fails on a shard's content is retried shard by shard,
    and the shard that fails alone is quarantined with the reason."""
    for group in groups:
        try:
            done.add(ingest_group(con, run_id, group, remove=remove))
        except SHARD_FAULTS as exc:
            if len(group) > 1:
                _ingest_groups(con, run_id, [[s] for s in group], done, remove)
                continue
            reason = f"cannot be ingested ({type(exc).__name__}: {str(exc).splitlines()[0]})"
            done.add(IngestReport(quarantined=(quarantine_shard(group[0], reason),)))


def missing_reason(run_dir: Path) -> str:
    """Why a finished run lacks samples: quarantined shards, else ingested ones the warehouse lost."""
    if (quarantine_root(run_dir.parent) / run_dir.name).exists():
        return "a shard was quarantined; see python -m warehouse status"
    return (
        "shards staged and ingested are not in the warehouse: its write-ahead log was lost or damaged "
        "after they were committed"
    )


def finish_run(con: duckdb.DuckDBPyConnection, run_id: int, final: RunFinal, why_missing: str = "") -> str:
    """Record how a run ended and its measured costs; a run missing samples is `failed`, not `complete`.

    Returns the status recorded."""
    status, error = final.status, final.error
    row = con.execute(
        "SELECT r.n_samples, (SELECT count(*) FROM samples s WHERE s.run_id = r.run_id) FROM runs r "
        "WHERE r.run_id = ?",
        [run_id],
    ).fetchone()
    assert row is not None, f"run {run_id} vanished"
    expected, present = int(row[0]), int(row[1])
    if status == "complete" and present < expected:
        status = "failed"
        why = why_missing or "see python -m warehouse status"
        error = (
            f"{expected - present} of {expected} samples are missing ({why}); "
            f"collect them with: python -m collector.run --resume {run_id}"
        )
    con.execute("BEGIN TRANSACTION")
    con.execute(
        "UPDATE runs SET status = ?, finished_at = ?, wall_s = ?, tokens_per_s = ?, error = ? "
        "WHERE run_id = ?",
        [status, datetime.fromisoformat(final.finished_at), final.wall_s, final.tokens_per_s, error, run_id],
    )
    con.execute("DELETE FROM run_costs WHERE run_id = ?", [run_id])
    if final.costs:
        insert_arrow(con, "run_costs", run_id, pa.Table.from_pylist(final.costs))
    con.execute("COMMIT")
    return status


def lost_sample_ids(con: duckdb.DuckDBPyConnection, run_dir: Path) -> set[int]:
    """Samples the run's `written.txt` lists that are neither in the warehouse nor in a shard on disk:
    committed once, then lost with the write-ahead log. Needs the file open (no other writer)."""
    rows = con.execute(
        "SELECT s.sample_id FROM samples s JOIN runs r USING (run_id) WHERE r.run_key = ?", [run_dir.name]
    ).fetchall()
    return written_sample_ids(run_dir) - {int(r[0]) for r in rows} - shard_sample_ids(run_dir)


def _manifest_or_quarantine(run_dir: Path) -> tuple[RunManifest | None, tuple[QuarantinedShard, ...]]:
    try:
        return read_manifest(run_dir), ()
    except (OSError, ValueError, TypeError, KeyError) as exc:
        return None, (quarantine_run(run_dir, f"run.json cannot be read ({type(exc).__name__}: {exc})"),)


def ingest_run_dir(
    con: duckdb.DuckDBPyConnection, run_dir: Path, done: IngestPass | None = None, *, remove: bool = True
) -> IngestReport:
    """Ingest every sound batch of one staged run (bad ones go to quarantine), then its final record.

    With `remove=False` (recovery into a new file) the staged folders are left as they are.
    """
    done = IngestPass() if done is None else done
    before = done.report
    manifest, bad_run = _manifest_or_quarantine(run_dir)
    if manifest is None:
        done.add(IngestReport(quarantined=bad_run))
        return done.report
    if (run_dir / ENDED).exists():
        return _since(before, done.report)  # a failed run kept for --resume: nothing new to ingest
    run_id, started = _ensure_run(con, manifest)
    if registered_run_id(run_dir) != run_id and remove:
        with contextlib.suppress(StagingFull):  # only a convenience for --resume by id; the disk may be full
            atomic_write_bytes(run_dir / REGISTERED, json.dumps({"run_id": run_id}).encode())
    shards, bad = _sound(_unledgered(con, batch_dirs(run_dir), remove=remove))
    done.add(IngestReport(runs_started=int(started), quarantined=bad))
    _ingest_groups(con, run_id, _pending_groups(shards), done, remove)
    final = read_final(run_dir)
    if final is not None and not _unledgered(con, batch_dirs(run_dir), remove=remove):
        status = finish_run(con, run_id, final, missing_reason(run_dir))
        if remove and status == "complete":
            remove_dir(run_dir)
        elif remove:  # kept, so that a failed run resumes by id or key even while another process ingests
            os.replace(run_dir / FINAL, run_dir / ENDED)
        done.add(IngestReport(runs_finished=1))
    if _since(before, done.report).writes:
        done.add(IngestReport(runs=(run_id,)))
    return _since(before, done.report)


def _since(before: IngestReport, after: IngestReport) -> IngestReport:
    """What `after` holds beyond `before` (reports only grow)."""
    return IngestReport(
        after.shards - before.shards,
        after.events - before.events,
        after.samples - before.samples,
        after.runs_started - before.runs_started,
        after.runs_finished - before.runs_finished,
        after.quarantined[len(before.quarantined) :],
        after.runs[len(before.runs) :],
    )


def ingest_pending(
    con: duckdb.DuckDBPyConnection,
    warehouse: Path,
    *,
    root: Path | None = None,
    remove: bool = True,
    checkpoint: bool = True,
) -> IngestReport:
    """Ingest everything staged next to `warehouse` (or under `root`) through a read-write connection;
    with `checkpoint` the write-ahead log is folded into the file after it (else see `fold_log`)."""
    root = staging_dir(warehouse) if root is None else root
    if not root.exists():
        return IngestReport()
    require_head(con, warehouse)
    for leftover in [*root.glob(".del-*"), *root.glob("*/.del-*")]:  # removals cut short by a crash
        shutil.rmtree(leftover, ignore_errors=True)
    done = IngestPass()
    try:
        for run_dir in staged_run_dirs(root):
            ingest_run_dir(con, run_dir, done, remove=remove)
    except duckdb.Error as exc:
        failure = ingest_failure(exc, warehouse, done.report)
        if failure is None:
            raise
        raise failure from exc
    if done.report.shards and checkpoint:
        fold_log(con, warehouse, done.report)
    return done.report


def fold_log(con: duckdb.DuckDBPyConnection, warehouse: Path, committed: IngestReport) -> None:
    """Fold the write-ahead log into the file (CHECKPOINT); `committed`: what the log holds, for the message
    of a full disk. Until then the log alone holds those commits, and DuckDB replays it on the next open."""
    try:
        con.execute("CHECKPOINT")
    except duckdb.Error as exc:
        failure = ingest_failure(exc, warehouse, committed)
        if failure is None:
            raise
        raise failure from exc


DISK_FULL_TEXT = ("no space left on device", "file too large", "disk quota exceeded")


def disk_full_message(exc: BaseException | None) -> str | None:
    """DuckDB's words for a full disk, found in an exception or the ones it was raised during; else None."""
    while exc is not None:
        text = str(exc)
        if any(t in text.lower() for t in DISK_FULL_TEXT):
            return text.splitlines()[0]
        exc = exc.__cause__ or exc.__context__
    return None


def ingest_failure(exc: duckdb.Error, warehouse: Path, committed: IngestReport) -> WarehouseError | None:
    """What really happened when a pass failed on a full disk or a damaged file; None for anything else."""
    full = disk_full_message(exc)
    if full is None:
        return warehouse_error_of(exc, warehouse)
    again = f"Free some space, then run: python -m warehouse ingest --warehouse {warehouse}"
    if "checkpoint" in full.lower():
        wal = f"{warehouse.name}.wal"
        return WarehouseError(
            f"the disk holding {warehouse} is full ({full}): every shard committed ({committed.shards} "
            f"since the last checkpoint) is in the write-ahead log {wal} and left staging, but folding the "
            f"log into the file (CHECKPOINT) failed and DuckDB closed the file; nothing is lost while {wal} "
            f"is kept, and the other shards stay staged. {again} (it replays the log first)"
        )
    return WarehouseError(
        f"the disk holding {warehouse} is full ({full}): the transaction in progress was not committed, so "
        f"its shards stay staged ({committed.shards} shard(s) committed before it are in the file). {again}"
    )


def try_ingest(warehouse: Path) -> IngestReport | None:
    """Open the file, ingest what is staged, close; None when another process holds the file."""
    try:
        con = open_duckdb(warehouse)
    except WarehouseLocked:
        return None
    try:
        return ingest_pending(con, warehouse)
    finally:
        con.close()
