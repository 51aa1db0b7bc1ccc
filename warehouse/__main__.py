"""`python -m warehouse`: bring a file to head, show its state, ingest, export, rebuild summaries, run SQL."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from warehouse.db import STORAGE_VERSION, WarehouseError, WarehouseLocked, convert_storage, duckdb_connection
from warehouse.export import export_parquet
from warehouse.ingest import ingest_pending
from warehouse.migrate import current_revision, downgrade, head_revision, require_head, upgrade
from warehouse.settings import resolve_warehouse, staging_dir
from warehouse.sql import sql_door
from warehouse.staging import batch_dirs
from warehouse.summaries import rebuild

EXAMPLES = """examples:
  python -m warehouse upgrade                       # ./fsgen.duckdb (or $FSGEN_WAREHOUSE) to head
  python -m warehouse status --warehouse runs.duckdb
  python -m warehouse ingest                        # move staged shards into the file
  python -m warehouse export --parquet out/         # hive-partitioned Parquet
  python -m warehouse rebuild-summaries             # recompute the summary tables from token_events
  python -m warehouse sql "SELECT * FROM run_cof"   # run SQL on the file, read-only (no query: stdin)
  python -m warehouse downgrade base                # remove the schema (and all data)
"""


def build_parser() -> argparse.ArgumentParser:
    """The CLI's argument parser."""
    parser = argparse.ArgumentParser(
        prog="python -m warehouse",
        description="Manage the fsgen DuckDB warehouse.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--warehouse", help="DuckDB file (default: $FSGEN_WAREHOUSE or ./fsgen.duckdb)")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser(
        "upgrade",
        help=f"apply migrations up to head (creates the file; writes storage version {STORAGE_VERSION})",
    )
    down = sub.add_parser("downgrade", help="revert migrations down to a revision")
    down.add_argument("revision", help="target revision, or 'base'")
    sub.add_parser("status", help="schema revision, head, staged shards, row counts")
    sub.add_parser("ingest", help="ingest staged shards (needs the file free of other processes)")
    exp = sub.add_parser("export", help="export tables as hive-partitioned Parquet")
    exp.add_argument("--parquet", required=True, type=Path, help="output folder")
    sub.add_parser("rebuild-summaries", help="recompute the summary tables from token_events")
    sql = sub.add_parser("sql", help="run SQL on the file opened read-only (no query: read stdin)")
    sql.add_argument("query", nargs="?", help="SQL text; one or more statements")
    for p in sub.choices.values():
        p.add_argument("--warehouse", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    return parser


def print_status(path: Path) -> None:
    """Print where the file stands."""
    head = head_revision()
    current = current_revision(path)
    print(f"warehouse : {path}{'' if path.exists() else ' (does not exist)'}")
    print(f"revision  : {current or 'none'} (head {head}){'' if current == head else '  -> run upgrade'}")
    root = staging_dir(path)
    staged = sum(len(batch_dirs(d)) for d in root.iterdir() if d.is_dir()) if root.exists() else 0
    print(f"staged    : {staged} shard(s) waiting in {root}")
    if current == head:
        with duckdb_connection(path, read_only=True) as con:
            for table in ("models", "runs", "samples", "token_events"):
                row = con.execute(f"SELECT count(*) FROM {table}").fetchone()
                print(f"{table:<10}: {row[0] if row else 0} rows")


def run_upgrade(path: Path) -> None:
    """Rewrite a file in the storage version DuckDB 1.x reads if needed, then migrate it to head."""
    if convert_storage(path):
        print(f"{path}: rewritten in DuckDB storage version {STORAGE_VERSION} (DuckDB 1.1 and later read it)")
    upgrade(path)
    print(f"{path} is at revision {head_revision()}")


def run_command(args: argparse.Namespace, path: Path) -> int:
    """Dispatch one subcommand; returns the exit status."""
    if args.command == "upgrade":
        run_upgrade(path)
    elif args.command == "downgrade":
        downgrade(path, args.revision)
        print(f"{path} is at revision {current_revision(path) or 'base'}")
    elif args.command == "status":
        print_status(path)
    elif args.command == "ingest":
        with duckdb_connection(path) as con:
            report = ingest_pending(con, path)
        print(
            f"ingested {report.shards} shard(s): {report.events} events, {report.samples} samples; "
            f"{report.runs_finished} run(s) finished"
        )
    elif args.command == "export":
        with duckdb_connection(path, read_only=True) as con:
            counts = export_parquet(con, args.parquet)
        for table, n in counts.items():
            print(f"{table:<16} {n:>12} rows -> {args.parquet / table}")
    elif args.command == "rebuild-summaries":
        with duckdb_connection(path) as con:
            require_head(con, path)
            events = rebuild(con)
            con.execute("CHECKPOINT")
        print(f"summary tables rebuilt from {events} token events")
    elif args.command == "sql":
        return sql_door(path, args.query)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    args = build_parser().parse_args(argv)
    path = resolve_warehouse(args.warehouse)
    try:
        return run_command(args, path)
    except WarehouseLocked as exc:
        print(f"error: {exc}. Stop the other process (or let the API ingest) and try again.", file=sys.stderr)
        return 2
    except WarehouseError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
