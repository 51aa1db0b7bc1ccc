"""Export the warehouse as hive-partitioned Parquet that DuckDB, Spark, Trino or polars read as is.

Every table of the models goes to `out/<table>/`: the per-token tables partitioned by run
(`run_id=<id>/data_0.parquet`, with `run_id` kept inside each file too, so a file read alone or a glob
read without hive parsing still has it); the others as one `data.parquet`. Every view of the schema (the
SQL contract analytics reads) goes to `out/<view>/data.parquet`.
"""

from __future__ import annotations

from pathlib import Path

import duckdb

from warehouse.catalogue import EXPORT_TABLES


def _relations(con: duckdb.DuckDBPyConnection, kind: str) -> set[str]:
    rows = con.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'main' AND table_type = ?",
        [kind],
    ).fetchall()
    return {str(r[0]) for r in rows}


def export_parquet(con: duckdb.DuckDBPyConnection, out: Path) -> dict[str, int]:
    """Write `out/<table>/run_id=<id>/*.parquet` or `out/<name>/data.parquet` for every table of the models
    (`EXPORT_TABLES`) and every view; returns row counts by name."""
    out.mkdir(parents=True, exist_ok=True)
    present = _relations(con, "BASE TABLE")
    names = [(t, p) for t, p in EXPORT_TABLES if t in present] + [
        (v, None) for v in sorted(_relations(con, "VIEW"))
    ]
    counts: dict[str, int] = {}
    for name, partitioned in names:
        target = out / name
        if partitioned:
            options = (
                f"FORMAT parquet, PARTITION_BY ({partitioned}), WRITE_PARTITION_COLUMNS true, "
                "COMPRESSION zstd, OVERWRITE_OR_IGNORE true"
            )
            con.execute(f"COPY \"{name}\" TO '{target}' ({options})")
        else:
            target.mkdir(exist_ok=True)
            con.execute(f"COPY \"{name}\" TO '{target / 'data.parquet'}' (FORMAT parquet, COMPRESSION zstd)")
        row = con.execute(f'SELECT count(*) FROM "{name}"').fetchone()
        counts[name] = 0 if row is None else int(row[0])
    return counts
