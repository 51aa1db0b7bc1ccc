"""`python -m warehouse status`: where a file stands, and every damaged or stuck state with its command."""

from __future__ import annotations

import time
from pathlib import Path

import duckdb

from warehouse.db import WarehouseDamaged, WarehouseLocked, duckdb_connection, named_damage
from warehouse.ingest import lost_sample_ids
from warehouse.liveness import run_liveness
from warehouse.migrate import current_revision, head_revision
from warehouse.quarantine import quarantined_shards
from warehouse.settings import staging_dir
from warehouse.staging import lock_holder, staged_run_dirs, staged_shard_count

Runs = dict[str, tuple[int, str, str | None]]  # run_key -> (run_id, status, error)
COUNTED = ("models", "runs", "samples", "token_events")


def verify_tables(con: duckdb.DuckDBPyConnection) -> None:
    """Read every column of every table once, so that a block failing its checksum shows now."""
    tables = con.execute("SELECT table_name FROM duckdb_tables() WHERE database_name = current_database()")
    for (table,) in tables.fetchall():
        con.execute(f'SELECT max(hash(t)) FROM "{table}" t').fetchall()  # names from the catalogue


def print_status(path: Path, verify: bool = True) -> int:
    """Print where the file stands; returns 1 when something is damaged or lost, else 0.

    `verify` reads every block of every table, so that damage anywhere shows now."""
    head = head_revision()
    print(f"warehouse : {path}{'' if path.exists() else ' (does not exist)'}")
    runs: Runs = {}
    problems = 0
    try:
        with named_damage(path):
            current = current_revision(path)
            behind = "" if current == head else "  -> run upgrade"
            print(f"revision  : {current or 'none'} (head {head}){behind}")
            if current == head:
                runs, problems = _print_tables(path, verify)
    except WarehouseLocked:
        print("revision  : unknown: another process holds the file (the API server, or a collector)")
    except WarehouseDamaged as exc:
        print(f"damage    : {exc}")
        problems += 1
    root = staging_dir(path)
    staged = staged_shard_count(root)
    print(f"staged    : {staged} shard(s) waiting in {root}")
    print_quarantine(path, runs)
    print_unfinished(path, runs)
    return 1 if problems else 0


def _print_tables(path: Path, verify: bool) -> tuple[Runs, int]:
    """Row counts, a read of every block, and samples the file lost; (runs, problems found)."""
    with duckdb_connection(path, read_only=True) as con:
        for table in COUNTED:
            row = con.execute(f"SELECT count(*) FROM {table}").fetchone()
            print(f"{table:<10}: {row[0] if row else 0} rows")
        rows = con.execute("SELECT run_key, run_id, status, error FROM runs ORDER BY run_id").fetchall()
        runs = {str(k): (int(i), str(st), e) for k, i, st, e in rows}
        if verify:
            start = time.perf_counter()
            verify_tables(con)
            print(f"damage    : none found (every block read in {time.perf_counter() - start:.1f} s)")
        return runs, print_lost(path, con, runs)


def print_lost(path: Path, con: duckdb.DuckDBPyConnection, runs: Runs) -> int:
    """Runs whose staged list names samples that are neither in the file nor staged; returns how many."""
    lines = []
    for run_dir in staged_run_dirs(staging_dir(path)):
        lost = lost_sample_ids(con, run_dir)
        if not lost:
            continue
        ref = str(runs[run_dir.name][0]) if run_dir.name in runs else run_dir.name
        lines.append(
            f"  run {ref} ({run_dir.name}): {len(lost)} sample(s) were staged and ingested but are not in "
            f"the file (ids {min(lost)}-{max(lost)}): its write-ahead log was lost or damaged after "
            f"they were committed\n    do  : collect them again with: python -m collector.run --resume {ref} "
            f"--warehouse {path}"
        )
    if lines:
        print("lost      :\n" + "\n".join(lines))
    return len(lines)


def print_quarantine(path: Path, runs: Runs) -> None:
    """Each quarantined shard, why, and what to do."""
    bad = quarantined_shards(staging_dir(path))
    if not bad:
        return
    print(f"quarantine: {len(bad)} shard(s) failed to read or verify and were moved aside:")
    for q in bad:
        staged = (staging_dir(path) / q.run_key).exists()
        ref = q.run_key if staged or q.run_key not in runs else str(runs[q.run_key][0])
        ids = f"samples {min(q.sample_ids)}-{max(q.sample_ids)}" if q.sample_ids else "the whole run"
        print(f"  {q.path}  ({ids})\n    why : {q.reason}")
        if runs.get(q.run_key, (0, "", None))[1] == "complete":
            print("    do  : nothing is missing any more (its run is complete): delete the folder above")
            continue
        print(
            f"    do  : collect them again with: python -m collector.run --resume {ref} --warehouse {path}\n"
            f"          (the rest of the run is ingested); then delete the folder above"
        )


def print_unfinished(path: Path, runs: Runs) -> None:
    """Runs that are not complete: running (live or stale) and failed, each with its --resume command."""
    keys = {d.name for d in staged_run_dirs(staging_dir(path))}
    keys |= {k for k, (_, status, _) in runs.items() if status == "running"}
    lines = []
    for key in sorted(keys, key=lambda k: runs.get(k, (10**12, "", None))[0]):
        run_id = runs[key][0] if key in runs else None
        live = run_liveness(path, key, run_id)
        if live.state == "failed" and key in runs:
            continue  # listed below with the warehouse's reason
        label = f"run {run_id} ({key})" if run_id is not None else f"run {key} (not ingested yet)"
        holder = lock_holder(staging_dir(path), key)
        busy = f"; being resumed by {holder}" if holder else ""
        hint = f"\n    resume: {live.resume}" if live.state in ("stale", "failed") and not holder else ""
        lines.append(f"  {label}: {live.state}, {live.detail}{busy}{hint}")
    for key, (run_id, status, error) in runs.items():
        if status == "failed":
            lines.append(f"  run {run_id} ({key}): failed, {error or 'no reason recorded'}")
    if lines:
        print("unfinished:\n" + "\n".join(lines))
