"""`python -m warehouse`: bring a file to head, show its state, ingest, export, rebuild summaries, run SQL."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import sqlalchemy as sa

from warehouse.db import (
    STORAGE_VERSION,
    WarehouseLocked,
    convert_storage,
    duckdb_connection,
    is_lock_error,
    named_damage,
    require_file,
)
from warehouse.errors import UserError
from warehouse.export import export_parquet
from warehouse.ingest import ingest_pending
from warehouse.migrate import current_revision, downgrade, head_revision, require_head, upgrade
from warehouse.recover import default_out, print_recovery, recover
from warehouse.runs import add_runs_parser, runs_command
from warehouse.serving import ENGINES, import_served, print_report
from warehouse.settings import add_warehouse_argument, command_parser, resolve_warehouse
from warehouse.sql import FORMATS, sql_door
from warehouse.status import print_status
from warehouse.summaries import rebuild

EXAMPLES = """examples:
  python -m warehouse upgrade                       # ./fsgen.duckdb (or $FSGEN_WAREHOUSE) to head
  python -m warehouse status --warehouse runs.duckdb  # exit 1 when damaged or samples were lost
  python -m warehouse ingest                        # move staged shards into the file
  python -m warehouse export --parquet out/         # hive-partitioned Parquet
  python -m warehouse rebuild-summaries             # recompute the summary tables from token_events
  python -m warehouse sql "SELECT * FROM run_cof"   # run SQL on the file, read-only (no query: stdin)
  python -m warehouse sql "FROM run_cof" --format csv > cof.csv         # every row and column
  python -m warehouse sql "FROM token_events" --format parquet --out events.parquet
  python -m warehouse recover --out saved.duckdb     # a damaged file: copy what can be read, re-ingest
  python -m warehouse downgrade base                # remove the schema (and all data)
  python -m warehouse import vllm responses.jsonl --draft zoo:zoo-s   # serving acceptance in
  python -m warehouse import sglang out.jsonl --model zoo:zoo-l --draft zoo:zoo-s
  python -m warehouse import trtllm perf.jsonl --model zoo:zoo-l --draft zoo:zoo-s --k 4
  python -m warehouse runs list --experiment default  # runs, their tags and exclusion
  python -m warehouse runs exclude 12               # out of every analysis until `runs include 12`
  python -m warehouse runs delete 12 --yes          # its rows everywhere, in one transaction
"""


def build_parser() -> argparse.ArgumentParser:
    """The CLI's argument parser."""
    parser = command_parser("python -m warehouse", "Manage the fsgen DuckDB warehouse.", EXAMPLES)
    add_warehouse_argument(parser)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser(
        "upgrade",
        help=f"apply migrations up to head (creates the file; writes storage version {STORAGE_VERSION})",
    )
    down = sub.add_parser("downgrade", help="revert migrations down to a revision")
    down.add_argument("revision", help="target revision, or 'base'")
    status = sub.add_parser(
        "status",
        help="schema, staged and quarantined shards, row counts, damage, runs to resume (exit 1: damage)",
    )
    status.add_argument(
        "--quick", action="store_true", help="skip reading every block (~0.25 s per million events)"
    )
    sub.add_parser("ingest", help="ingest staged shards (needs the file free of other processes)")
    exp = sub.add_parser("export", help="export tables as hive-partitioned Parquet")
    exp.add_argument("--parquet", required=True, type=Path, help="output folder")
    sub.add_parser("rebuild-summaries", help="recompute the summary tables from token_events")
    rec = sub.add_parser(
        "recover",
        help="copy what can still be read of a damaged file into a new one, with the staged shards",
    )
    rec.add_argument("--out", type=Path, help="the new file (default: NAME.recovered.duckdb beside it)")
    sql = sub.add_parser("sql", help="run SQL on the file opened read-only (no query: read stdin)")
    sql.add_argument("query", nargs="?", help="SQL text; one or more statements")
    sql.add_argument(
        "--format",
        choices=FORMATS,
        default="table",
        help="table (whole when piped, cut to the screen on a terminal), csv, json (rows as objects), "
        "parquet (one result)",
    )
    sql.add_argument("--out", type=Path, help="write the results to this file instead of stdout")
    add_runs_parser(sub)
    imp = sub.add_parser(
        "import",
        help="import a serving engine's saved responses (per-request speculative acceptance)",
        description="Per-request speculative acceptance from saved responses (see warehouse/serving.py).",
        epilog="examples:\n  "
        + "\n  ".join(line.strip() for line in EXAMPLES.splitlines() if " import " in line),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    imp.add_argument("engine", choices=ENGINES, help="the engine whose HTTP responses FILE holds")
    imp.add_argument("file", type=Path, help="JSONL: one response per line, as the engine returned it")
    imp.add_argument(
        "--draft", required=True, help="the draft model the server ran (as the warehouse names it)"
    )
    imp.add_argument("--model", help="the LLM (default: the response's `model`; SGLang and TRT-LLM need it)")
    imp.add_argument("--k", type=int, help="drafts per step, where the responses do not say (TRT-LLM)")
    for p in sub.choices.values():
        p.add_argument("--warehouse", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    return parser


def run_upgrade(path: Path) -> None:
    """Rewrite a file in the storage version DuckDB 1.x reads if needed, then migrate it to head."""
    if convert_storage(path):
        print(f"{path}: rewritten in DuckDB storage version {STORAGE_VERSION} (DuckDB 1.1 and later read it)")
    upgrade(path)
    print(f"{path} is at revision {head_revision()}")


def run_command(args: argparse.Namespace, path: Path) -> int:
    """Dispatch one subcommand; returns the exit status."""
    if args.command in ("downgrade", "rebuild-summaries", "import"):  # these never create the file
        require_file(path)
    if args.command == "upgrade":
        run_upgrade(path)
    elif args.command == "downgrade":
        downgrade(path, args.revision)
        print(f"{path} is at revision {current_revision(path) or 'base'}")
    elif args.command == "status":
        return print_status(path, verify=not args.quick)
    elif args.command == "ingest":
        with duckdb_connection(path) as con:
            report = ingest_pending(con, path)
        print(
            f"ingested {report.shards} shard(s): {report.events} events, {report.samples} samples; "
            f"{report.runs_finished} run(s) finished"
        )
        for q in report.quarantined:
            print(f"quarantined {q.path}: {q.reason}; see: python -m warehouse status --warehouse {path}")
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
    elif args.command == "recover":
        return print_recovery(path, recover(path, args.out or default_out(path)))
    elif args.command == "sql":
        return sql_door(path, args.query, fmt=args.format, out_path=args.out)
    elif args.command == "runs":
        return runs_command(args, path)
    elif args.command == "import":
        with duckdb_connection(path) as con:
            require_head(con, path)
            served = import_served(con, args.file, args.engine, model=args.model, draft=args.draft, k=args.k)
        print_report(served, args.file, args.engine)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    args = build_parser().parse_args(argv)
    path = resolve_warehouse(args.warehouse)
    try:
        try:
            with named_damage(path):
                return run_command(args, path)
        except sa.exc.OperationalError as exc:  # Alembic's engine met DuckDB's lock
            if not is_lock_error(exc):
                raise
            raise WarehouseLocked(f"{path} is open in another process ({exc.orig})") from exc
    except WarehouseLocked as exc:
        print(f"error: {exc}. Stop the other process (or let the API ingest) and try again.", file=sys.stderr)
        return 2
    except UserError as exc:  # WarehouseError among them
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
