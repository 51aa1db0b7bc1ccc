"""Resuming a run after its last committed sample (ingested, or staged and waiting)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from collector.config import RunConfig
from collector.engine import RunSummary, run_collection
from warehouse.db import WarehouseError, WarehouseLocked, duckdb_connection
from warehouse.liveness import run_liveness
from warehouse.settings import staging_dir
from warehouse.staging import read_manifest, staged_sample_ids


def _from_warehouse(run_id: int, warehouse: Path) -> tuple[str, RunConfig, set[int]]:
    try:
        with duckdb_connection(warehouse, read_only=True) as con:
            row = con.execute(
                "SELECT run_key, settings, status FROM runs WHERE run_id = ?", [run_id]
            ).fetchone()
            if row is None:
                raise WarehouseError(
                    f"run {run_id} is not in {warehouse}; list runs with: duckdb {warehouse} "
                    '"SELECT run_id, status FROM runs"'
                )
            if row[2] == "complete":
                raise WarehouseError(f"run {run_id} is already complete; nothing to resume")
            ids = con.execute("SELECT sample_id FROM samples WHERE run_id = ?", [run_id]).fetchall()
    except WarehouseLocked as exc:
        raise WarehouseError(
            f"{exc}; resume by run key instead (the folder name under {staging_dir(warehouse)})"
        ) from exc
    return str(row[0]), RunConfig.from_settings(json.loads(row[1])), {int(r[0]) for r in ids}


def resume_point(ref: str, warehouse: Path) -> tuple[str, RunConfig, frozenset[int]]:
    """Run key, settings and committed sample ids (ingested or staged) of run `ref` (an id or a key)."""
    committed: set[int] = set()
    if ref.isdigit():
        run_key, config, committed = _from_warehouse(int(ref), warehouse)
    else:
        manifest = read_manifest(staging_dir(warehouse) / ref)
        if manifest is None:
            raise WarehouseError(f"no staged run with key {ref} under {staging_dir(warehouse)}")
        run_key, config = ref, RunConfig.from_settings(manifest.settings)
    run_dir = staging_dir(warehouse) / run_key
    if run_dir.exists():
        liveness = run_liveness(warehouse, run_key)
        if liveness.state == "live" and liveness.pid != os.getpid():
            raise WarehouseError(
                f"run {ref} is still being collected ({liveness.detail}); wait for it, or stop that process "
                "and resume then"
            )
        committed |= staged_sample_ids(run_dir)
    return run_key, config, frozenset(committed)


def resume_run(ref: str, warehouse: Path, *, progress: bool = True) -> tuple[RunConfig, RunSummary]:
    """Continue run `ref` (a run id, or a run key still in staging) where it stopped."""
    run_key, config, done = resume_point(ref, warehouse)
    summary = run_collection(config, warehouse, run_key=run_key, done=done, progress=progress)
    return config, summary
