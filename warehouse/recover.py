"""`python -m warehouse recover`: copy what DuckDB can still read of a damaged file into a new one.

The damaged file is never written: it is opened read-only, or a copy of it without its write-ahead log
when the log cannot be replayed (a truncated file opens as long as its catalogue survived; its blocks
past the end are reported unreadable). Every table is copied into a new file at head, a row group at a
time where a whole table cannot be read; samples whose token events did not all survive are dropped (so
`--resume` collects them again), runs missing samples are marked `failed` with their resume command, the
summary tables are rebuilt, and the shards still staged beside the damaged file are ingested into the new
one (and left in place). The report says what could not be saved.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import duckdb

from warehouse.db import WarehouseError, damage_of
from warehouse.ingest import IngestReport, ingest_pending
from warehouse.migrate import upgrade
from warehouse.models import RUN_ID_SEQ, Base
from warehouse.settings import staging_dir
from warehouse.summaries import TABLES as SUMMARY_TABLES
from warehouse.summaries import rebuild

# Rebuilt from token_events rather than copied; alembic_version comes with the new file's migrations.
COPIED = tuple(t.name for t in Base.metadata.sorted_tables if t.name not in {s.name for s in SUMMARY_TABLES})
ROW_GROUP = 122_880  # DuckDB's rows per row group: the unit a damaged block takes with it


@dataclass
class RecoveryReport:
    """What went into the new file, and what could not be saved."""

    out: Path
    copied: dict[str, int] = field(default_factory=dict)  # table -> rows copied
    unreadable: dict[str, int] = field(default_factory=dict)  # table -> rows in damaged blocks
    lost: list[str] = field(default_factory=list)  # what could not be saved, in words
    incomplete: list[str] = field(default_factory=list)  # runs missing samples, with their resume command
    staged: IngestReport = field(default_factory=IngestReport)


def default_out(path: Path) -> Path:
    """fsgen.duckdb -> fsgen.recovered.duckdb, beside it."""
    return path.with_name(f"{path.stem}.recovered{path.suffix or '.duckdb'}")


def _attachable(con: duckdb.DuckDBPyConnection, path: Path) -> str | None:
    """Attach `path` read-only as `src`; None on success, else DuckDB's error text."""
    try:
        con.execute(f"ATTACH '{str(path).replace(chr(39), chr(39) * 2)}' AS src (READ_ONLY)")
        return None
    except duckdb.Error as exc:
        return str(exc)


def attach_source(con: duckdb.DuckDBPyConnection, path: Path, tmp: Path, report: RecoveryReport) -> bool:
    """Attach what can be read of `path` as `src` (itself, else a copy in `tmp` without its write-ahead
    log); False when DuckDB cannot open it at all (its catalogue is lost, e.g. truncated away)."""
    error = _attachable(con, path)
    if error is None:
        return True
    damage = damage_of(error.lower(), path) or error.splitlines()[0]
    if "write-ahead log" in damage:
        report.lost.append(
            f"{damage}: what was committed after the last checkpoint is lost (shards still staged are "
            "ingested again below)"
        )
        copy = tmp / path.name  # the copy leaves the write-ahead log behind
        shutil.copyfile(path, copy)
        error = _attachable(con, copy) or ""
        if not error:
            return True
        damage = damage_of(error.lower(), path) or error.splitlines()[0]
    report.lost.append(f"nothing could be read from {path}: {damage}")
    return False


def _columns(con: duckdb.DuckDBPyConnection, database: str, table: str) -> list[str]:
    rows = con.execute(
        "SELECT column_name FROM duckdb_columns() WHERE database_name = ? AND table_name = ? "
        "ORDER BY column_index",
        [database, table],
    ).fetchall()
    return [str(r[0]) for r in rows]


def _inserted(con: duckdb.DuckDBPyConnection, insert: str) -> int:
    """Run an INSERT; DuckDB answers with the count of rows it inserted."""
    return int((con.execute(insert).fetchone() or (0,))[0])


def copy_table(
    con: duckdb.DuckDBPyConnection, path: Path, table: str, target: str, report: RecoveryReport
) -> None:
    """Copy `src.table` into the new file: whole, else a row group at a time, skipping unreadable ones."""
    have = set(_columns(con, "src", table))
    if not have:
        report.lost.append(f"table {table} could not be found in the damaged file")
        return
    cols = ", ".join(f'"{c}"' for c in _columns(con, target, table) if c in have)
    insert = f'INSERT INTO {target}.main."{table}" ({cols}) SELECT {cols} FROM src.main."{table}"'
    try:
        report.copied[table] = _inserted(con, insert)
        return
    except duckdb.Error:
        pass  # read it a row group at a time
    total = int((con.execute(f'SELECT count(*) FROM src.main."{table}"').fetchone() or (0,))[0])
    copied, lost, why = 0, 0, ""
    for start in range(0, total, ROW_GROUP):
        where = f" WHERE rowid >= {start} AND rowid < {start + ROW_GROUP}"
        try:
            copied += _inserted(con, insert + where)
        except duckdb.Error as exc:
            lost += min(ROW_GROUP, total - start)
            why = why or damage_of(str(exc).lower(), path) or str(exc).splitlines()[0]
    report.copied[table], report.unreadable[table] = copied, lost
    if lost:
        report.lost.append(f"{lost} of {total} rows of {table} could not be read ({why})")


def drop_partial_samples(con: duckdb.DuckDBPyConnection) -> int:
    """Drop samples whose token events did not all survive (resume collects them again); returns how many."""
    partial = (
        "SELECT s.run_id, s.sample_id FROM samples s LEFT JOIN (SELECT run_id, sample_id, count(*) AS n "
        "FROM token_events GROUP BY ALL) e USING (run_id, sample_id) WHERE coalesce(e.n, 0) != s.n_tokens"
    )
    rows = con.execute(partial).fetchall()
    con.execute(f"CREATE TEMP TABLE partial_samples AS {partial}")
    for table in ("token_events", "spec_cycles", "samples"):
        con.execute(
            f"DELETE FROM {table} t USING partial_samples p "
            "WHERE t.run_id = p.run_id AND t.sample_id = p.sample_id"
        )
    con.execute("DROP TABLE partial_samples")
    return len(rows)


def mark_incomplete(con: duckdb.DuckDBPyConnection, out: Path, report: RecoveryReport) -> None:
    """A complete run missing samples is `failed`, with the command that collects them again."""
    rows = con.execute(
        "SELECT r.run_id, r.run_key, r.n_samples - coalesce(s.n, 0) FROM runs r LEFT JOIN (SELECT run_id, "
        "count(*) AS n FROM samples GROUP BY run_id) s USING (run_id) WHERE coalesce(s.n, 0) < r.n_samples "
        "ORDER BY 1"
    ).fetchall()
    for run_id, run_key, missing in rows:
        resume = f"python -m collector.run --resume {run_id} --warehouse {out}"
        error = f"recovered from a damaged file with {missing} sample(s) missing; collect them with: {resume}"
        con.execute(
            "UPDATE runs SET status = 'failed', error = ? WHERE run_id = ? AND status = 'complete'",
            [error, run_id],
        )
        report.incomplete.append(f"run {run_id} ({run_key}): {missing} sample(s) missing; {resume}")


def _advance_run_ids(con: duckdb.DuckDBPyConnection) -> None:
    """New runs must get ids past the copied ones (the sequence starts at 1 in the new file)."""
    top = int((con.execute("SELECT coalesce(max(run_id), 0) FROM runs").fetchone() or (0,))[0])
    if top:
        con.execute(f"SELECT max(nextval('{RUN_ID_SEQ.name}')) FROM range(?)", [top]).fetchall()


def recover(path: Path, out: Path) -> RecoveryReport:
    """Copy what can be read of `path` into a new file `out` at head, then ingest what is still staged."""
    if not path.exists():
        raise WarehouseError(f"no warehouse at {path}; nothing to recover")
    if out.exists() or out.resolve() == path.resolve():
        raise WarehouseError(f"{out} exists; pass --out with a path that does not exist yet")
    report = RecoveryReport(out)
    upgrade(out)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=".recover-") as tmp, duckdb.connect() as con:
        con.execute(f"ATTACH '{str(out).replace(chr(39), chr(39) * 2)}' AS dst")
        if attach_source(con, path, Path(tmp), report):
            for table in COPIED:
                copy_table(con, path, table, "dst", report)
            con.execute("DETACH src")
        con.execute("USE dst")
        dropped = drop_partial_samples(con) if report.unreadable.get("token_events") else 0
        if dropped:
            report.lost.append(f"{dropped} sample(s) lost some of their token events and were dropped")
        mark_incomplete(con, out, report)
        _advance_run_ids(con)
        rebuild(con)
        con.execute("CHECKPOINT")
    with duckdb.connect(str(out)) as con:
        report.staged = ingest_pending(con, out, root=staging_dir(path), remove=False)
        report.incomplete.clear()  # the staged shards may have filled some runs in: count again
        con.execute("BEGIN TRANSACTION")
        mark_incomplete(con, out, report)
        con.execute("COMMIT")
    return report


def print_recovery(path: Path, report: RecoveryReport) -> int:
    """Print what was saved and what was not; returns 1 when something could not be saved, else 0."""
    out = report.out
    print(f"recovered into {out} (at head); {path} was not changed")
    for table, rows in report.copied.items():
        print(f"  {table:<16} {rows:>12} rows copied")
    staged = report.staged
    print(f"  staged shards ingested again: {staged.shards} ({staged.samples} samples), left in place")
    for q in staged.quarantined:
        report.lost.append(f"staged shard {q.path} could not be ingested: {q.reason}")
    for line in report.lost:
        print(f"not saved: {line}")
    for line in report.incomplete:
        print(f"incomplete: {line}")
    wal = f" && mv {path}.wal {path}.damaged.wal" if Path(f"{path}.wal").exists() else ""
    print(
        f"next: check it with: python -m warehouse status --warehouse {out}; then keep the damaged file "
        f"aside and put the new one in its place: mv {path} {path}.damaged{wal} && mv {out} {path}"
    )
    return 1 if report.lost or report.incomplete else 0
