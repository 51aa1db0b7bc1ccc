"""Resuming a run after its last committed sample (ingested, or staged and waiting).

One process resumes a run at a time (the run's lock beside its staging folder). A resumed run keeps its
recorded settings: a flag that would change them is refused, except where the run's samples go on being
computed (`RESUMABLE`); threads and the progress bar are not settings at all. Works while another process
(the API server) holds the warehouse: the run's staging folder names its settings and its id, the collector
stages, and that process ingests.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from collector.config import RunConfig, flag_name
from collector.engine import RunSummary, collect_locked
from warehouse.db import WarehouseError, WarehouseLocked, duckdb_connection
from warehouse.errors import UserError
from warehouse.liveness import run_liveness
from warehouse.settings import staging_dir
from warehouse.staging import (
    MANIFEST,
    read_manifest,
    registered_run_id,
    run_lock,
    shard_sample_ids,
    staged_run_dirs,
    staged_sample_ids,
    strike_written,
    written_sample_ids,
)

RESUMABLE = ("device", "device_map")  # where the models run; every other setting shapes the tokens
ALWAYS_ALLOWED = ("resume", "warehouse", "threads", "quiet")  # flags that are not run settings


@dataclass(frozen=True)
class ResumePoint:
    """Where a run stands: its key, settings, samples committed, and samples the warehouse lost."""

    run_key: str
    config: RunConfig
    done: frozenset[int]
    lost: frozenset[int]  # staged and ingested once, missing from the file now (a lost WAL): collected again


def _in_file(ref: str, warehouse: Path) -> tuple[str, dict[str, Any], str, set[int], set[int]] | None:
    """(run key, settings, status, sample ids in the file, lost ids) of run `ref`; None if not in the file.

    The staging folder is read while the file is open read-only, so no ingest moves shards meanwhile.
    """
    column, value = ("run_id", int(ref)) if ref.isdigit() else ("run_key", ref)
    with duckdb_connection(warehouse, read_only=True) as con:
        row = con.execute(
            f"SELECT run_id, run_key, settings, status FROM runs WHERE {column} = ?", [value]
        ).fetchone()
        if row is None:
            return None
        rows = con.execute("SELECT sample_id FROM samples WHERE run_id = ?", [row[0]]).fetchall()
        ids = {int(r[0]) for r in rows}
        run_dir = staging_dir(warehouse) / str(row[1])
        lost = written_sample_ids(run_dir) - ids - shard_sample_ids(run_dir) if run_dir.exists() else set()
    return str(row[1]), json.loads(row[2]), str(row[3]), ids, lost


def _staged_key(ref: str, warehouse: Path) -> str | None:
    """The key of run `ref` (an id the ingester recorded, or a key) among the staged runs."""
    root = staging_dir(warehouse)
    if not ref.isdigit():
        return ref if (root / ref / MANIFEST).exists() else None
    return next((d.name for d in staged_run_dirs(root) if registered_run_id(d) == int(ref)), None)


def _not_found(ref: str, warehouse: Path, held: bool) -> WarehouseError:
    root = staging_dir(warehouse)
    if held:
        return WarehouseError(
            f"run {ref} is not among the staged runs under {root}, and {warehouse} is open in another "
            "process (the API server?), so its record cannot be read; resume by run key (a folder name "
            "there), or stop that process and try again"
        )
    return WarehouseError(
        f"run {ref} is neither in {warehouse} nor staged under {root}; list runs with: "
        f"python -m warehouse status --warehouse {warehouse}"
    )


def _record(ref: str, warehouse: Path) -> tuple[str, dict[str, Any], str | None, set[int], set[int]]:
    """(run key, settings, status (None: staged only), sample ids in the file, lost ids) of run `ref`."""
    held = False
    try:
        found = _in_file(ref, warehouse)
    except WarehouseLocked:
        found, held = None, True
    if found is not None:
        return found
    key = _staged_key(ref, warehouse)
    manifest = read_manifest(staging_dir(warehouse) / key) if key else None
    if key is None or manifest is None:
        raise _not_found(ref, warehouse, held)
    return key, manifest.settings, None, set(), set()


def recorded_config(ref: str, warehouse: Path) -> RunConfig:
    """The settings run `ref` (an id or a key) was recorded with, whatever its status."""
    return RunConfig.from_settings(_record(ref, warehouse)[1])


def find_resume_point(ref: str, warehouse: Path) -> ResumePoint:
    """Run key, settings, committed sample ids (ingested or staged) and lost ids of run `ref`."""
    run_key, settings, status, done, lost = _record(ref, warehouse)
    if status == "complete":
        raise WarehouseError(f"run {ref} is already complete; nothing to resume")
    run_dir = staging_dir(warehouse) / run_key
    if run_dir.exists():
        liveness = run_liveness(warehouse, run_key)
        if liveness.state == "live" and liveness.pid != os.getpid():
            raise WarehouseError(
                f"run {ref} is still being collected ({liveness.detail}); wait for it, or stop that process "
                "and resume then"
            )
        done |= staged_sample_ids(run_dir) - lost
    return ResumePoint(run_key, RunConfig.from_settings(settings), frozenset(done), frozenset(lost))


def resume_point(ref: str, warehouse: Path) -> tuple[str, RunConfig, frozenset[int]]:
    """Run key, settings and committed sample ids (ingested or staged) of run `ref` (an id or a key)."""
    point = find_resume_point(ref, warehouse)
    return point.run_key, point.config, point.done


def apply_flags(config: RunConfig, flags: dict[str, Any], ref: str) -> RunConfig:
    """The recorded config with the placement flags given; a flag that would change a setting is refused."""
    conflicts = [
        f"--{flag_name(k)} {v} (recorded: {getattr(config, k)})"
        for k, v in flags.items()
        if k not in RESUMABLE and v != getattr(config, k)
    ]
    if conflicts:
        may = ", ".join(f"--{flag_name(k)}" for k in (*ALWAYS_ALLOWED[2:], *RESUMABLE))
        raise UserError(
            f"run {ref} was recorded with other settings: {'; '.join(conflicts)}. A resumed run keeps its "
            f"settings; only {may} may change. Leave those flags out, or start a new run"
        )
    return replace(config, **{k: flags[k] for k in RESUMABLE if k in flags})


def resume_run(
    ref: str, warehouse: Path, *, progress: bool = True, flags: dict[str, Any] | None = None
) -> tuple[RunConfig, RunSummary]:
    """Continue run `ref` (a run id, or a run key still in staging) where it stopped."""
    first = find_resume_point(ref, warehouse)
    with run_lock(staging_dir(warehouse), first.run_key):
        point = find_resume_point(ref, warehouse)  # again under the lock: nobody stages this run meanwhile
        config = apply_flags(point.config, flags or {}, ref)
        if point.lost:
            strike_written(staging_dir(warehouse) / point.run_key, point.lost)
            print(
                f"run {ref}: {len(point.lost)} sample(s) were ingested once but are not in {warehouse} (its "
                "write-ahead log was lost or damaged); collecting them again"
            )
        summary = collect_locked(config, warehouse, point.run_key, point.done, progress)
    return config, summary
