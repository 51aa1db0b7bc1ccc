"""Export the warehouse as hive-partitioned Parquet that DuckDB, Spark, Trino or polars read as is."""

from __future__ import annotations

from pathlib import Path

import duckdb

TABLES = ("models", "runs", "samples", "ingested_shards")


def export_parquet(con: duckdb.DuckDBPyConnection, out: Path) -> dict[str, int]:
    """Write each table under `out/<table>/`; token_events and samples partitioned by run_id."""
    out.mkdir(parents=True, exist_ok=True)
    counts: dict[str, int] = {}
    for table in TABLES:
        target = out / table
        partition = "PARTITION_BY (run_id), " if table == "samples" else ""
        con.execute(f"COPY {table} TO '{target}' (FORMAT parquet, {partition}OVERWRITE_OR_IGNORE true)")
        counts[table] = _count(con, table)
    target = out / "token_events"
    con.execute(
        f"COPY token_events TO '{target}' "
        "(FORMAT parquet, PARTITION_BY (run_id), COMPRESSION zstd, OVERWRITE_OR_IGNORE true)"
    )
    counts["token_events"] = _count(con, "token_events")
    return counts


def _count(con: duckdb.DuckDBPyConnection, table: str) -> int:
    row = con.execute(f"SELECT count(*) FROM {table}").fetchone()
    return 0 if row is None else int(row[0])
