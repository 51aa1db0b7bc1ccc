"""Idempotent ingest of staged shards: one short transaction per shard, recorded in a ledger."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from dataclasses import dataclass, fields, replace
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from warehouse.db import WarehouseError, WarehouseLocked, open_duckdb
from warehouse.migrate import require_head
from warehouse.quarantine import QuarantinedShard, quarantine_run, quarantine_shard
from warehouse.settings import staging_dir
from warehouse.staging import (
    CYCLES_FILE,
    EVENTS_FILE,
    SAMPLES_FILE,
    RunFinal,
    RunManifest,
    batch_dirs,
    read_arrow,
    read_final,
    read_manifest,
    verify_shard,
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
            "INSERT INTO models (name, path, params, architecture, vocab_size, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            [m.name, m.path, m.params, m.architecture, m.vocab_size, now],
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


def _read_each(files: list[Path]) -> list[pa.Table]:
    return [read_arrow(f) for f in files]


def _concat(tables: list[pa.Table]) -> pa.Table:
    return pa.concat_tables(tables, promote_options="default")


def ingest_group(con: duckdb.DuckDBPyConnection, run_id: int, shards: list[Path]) -> IngestReport:
    """Ingest shards in one transaction, with their ledger rows; folders are removed only after commit."""
    sample_parts = _read_each([s / SAMPLES_FILE for s in shards])
    event_parts = _read_each([s / EVENTS_FILE for s in shards])
    samples, events = _concat(sample_parts), _concat(event_parts)
    cycles = [s / CYCLES_FILE for s in shards if (s / CYCLES_FILE).exists()]
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
            insert_arrow(con, "spec_cycles", run_id, _concat(_read_each(cycles)))
        insert_arrow(con, "ingested_shards", run_id, ledger)
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    for shard in shards:
        remove_dir(shard)
    return IngestReport(shards=len(shards), events=events.num_rows, samples=samples.num_rows)


def _unledgered(con: duckdb.DuckDBPyConnection, shards: list[Path]) -> list[Path]:
    """Shards not in the ledger; ledgered ones (committed before a crash left their folder) are removed."""
    keys = [_shard_key(s) for s in shards]
    query = "SELECT shard FROM ingested_shards WHERE shard IN (SELECT unnest(?))"
    done = {r[0] for r in con.execute(query, [keys]).fetchall()}
    for shard, key in zip(shards, keys, strict=True):
        if key in done:
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


def finish_run(con: duckdb.DuckDBPyConnection, run_id: int, final: RunFinal) -> None:
    """Record how a run ended and its measured costs; a run missing samples is `failed`, not `complete`."""
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
        error = (
            f"{expected - present} of {expected} samples are missing (a shard was quarantined; see "
            f"python -m warehouse status); collect them with: python -m collector.run --resume {run_id}"
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


def _manifest_or_quarantine(run_dir: Path) -> tuple[RunManifest | None, tuple[QuarantinedShard, ...]]:
    try:
        return read_manifest(run_dir), ()
    except (OSError, ValueError, TypeError, KeyError) as exc:
        return None, (quarantine_run(run_dir, f"run.json cannot be read ({type(exc).__name__}: {exc})"),)


def ingest_run_dir(con: duckdb.DuckDBPyConnection, run_dir: Path) -> IngestReport:
    """Ingest every sound batch of one staged run (bad ones go to quarantine), then its final record."""
    manifest, bad_run = _manifest_or_quarantine(run_dir)
    if manifest is None:
        return IngestReport(quarantined=bad_run)
    run_id, started = _ensure_run(con, manifest)
    shards, bad = _sound(_unledgered(con, batch_dirs(run_dir)))
    report = IngestReport(runs_started=int(started), quarantined=bad)
    for group in _pending_groups(shards):
        report = report + ingest_group(con, run_id, group)
    final = read_final(run_dir)
    if final is not None and not batch_dirs(run_dir):
        finish_run(con, run_id, final)
        remove_dir(run_dir)
        report = report + IngestReport(runs_finished=1)
    return replace(report, runs=(run_id,)) if report.writes else report


def ingest_pending(con: duckdb.DuckDBPyConnection, warehouse: Path) -> IngestReport:
    """Ingest everything staged next to `warehouse` through an open read-write connection."""
    root = staging_dir(warehouse)
    if not root.exists():
        return IngestReport()
    require_head(con, warehouse)
    for leftover in [*root.glob(".del-*"), *root.glob("*/.del-*")]:  # removals cut short by a crash
        shutil.rmtree(leftover, ignore_errors=True)
    report = IngestReport()
    try:
        for run_dir in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
            report = report + ingest_run_dir(con, run_dir)
        if report.shards:
            con.execute("CHECKPOINT")
    except duckdb.Error as exc:
        full = disk_full_message(exc)
        if full is None:
            raise
        raise WarehouseError(
            f"the disk holding {warehouse} is full ({full}); nothing is lost: the shards stay staged. "
            f"Free some space, then run: python -m warehouse ingest --warehouse {warehouse}"
        ) from exc
    return report


DISK_FULL_TEXT = ("no space left on device", "file too large", "disk quota exceeded")


def disk_full_message(exc: BaseException | None) -> str | None:
    """DuckDB's words for a full disk, found in an exception or the ones it was raised during; else None."""
    while exc is not None:
        text = str(exc)
        if any(t in text.lower() for t in DISK_FULL_TEXT):
            return text.splitlines()[0]
        exc = exc.__cause__ or exc.__context__
    return None


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
