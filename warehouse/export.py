"""Export the warehouse as hive-partitioned Parquet that DuckDB, Spark, Trino or polars read as is."""

from __future__ import annotations

from pathlib import Path

import duckdb

# (table, partitioned by run_id): the per-token tables are large; metadata tables are one file each.
TABLES = (
    ("models", False),
    ("runs", False),
    ("ingested_shards", False),
    ("samples", True),
    ("token_events", True),
    ("spec_cycles", True),
)


def export_parquet(con: duckdb.DuckDBPyConnection, out: Path) -> dict[str, int]:
    """Write `out/<table>/run_id=<id>/*.parquet` (or `out/<table>/data.parquet`); returns row counts."""
    out.mkdir(parents=True, exist_ok=True)
    present = {r[0] for r in con.execute("SELECT table_name FROM information_schema.tables").fetchall()}
    counts: dict[str, int] = {}
    for table, partitioned in TABLES:
        if table not in present:
            continue
        target = out / table
        if partitioned:
            options = "FORMAT parquet, PARTITION_BY (run_id), COMPRESSION zstd, OVERWRITE_OR_IGNORE true"
            con.execute(f"COPY {table} TO '{target}' ({options})")
        else:
            target.mkdir(exist_ok=True)
            con.execute(f"COPY {table} TO '{target / 'data.parquet'}' (FORMAT parquet)")
        row = con.execute(f"SELECT count(*) FROM {table}").fetchone()
        counts[table] = 0 if row is None else int(row[0])
    return counts
