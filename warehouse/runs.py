"""`python -m warehouse runs list|tag|exclude|include|delete`: keep, file and remove runs.

An excluded run stays in the file but is out of every analysis until it is included again. A delete
removes a run's rows from every table that has a `run_id` column (derived from the models), in one
transaction, so the summary tables stay equal to a rebuild from the events that remain.
"""

from __future__ import annotations

import argparse
import json
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb

from warehouse.db import duckdb_connection
from warehouse.errors import UserError
from warehouse.liveness import run_liveness
from warehouse.migrate import require_head
from warehouse.models import Base
from warehouse.settings import staging_dir

# Every table holding rows of a run, `runs` itself last (derived: a new table with run_id is covered).
RUN_TABLES: tuple[str, ...] = tuple(
    sorted((t.name for t in Base.metadata.sorted_tables if "run_id" in t.c), key=lambda n: n == "runs")
)
# `runs list` filters: runs columns compared for equality (and --tag, --excluded/--included).
LIST_FILTERS = ("experiment", "llm", "slm", "method", "router", "dataset", "status")
LISTED = ("run_id", "experiment", "status", "llm", "slm", "method", "router", "dataset", "n_samples")

EXAMPLES = """examples:
  python -m warehouse runs list --experiment default --method oracle
  python -m warehouse runs list --tag swapped --excluded
  python -m warehouse runs tag 12 13 --tag pilot            # --remove takes the tag off again
  python -m warehouse runs exclude 12                       # out of every analysis, kept in the file
  python -m warehouse runs include 12
  python -m warehouse runs delete 12                        # lists what would go
  python -m warehouse runs delete 12 --yes                  # removes it, in one transaction
"""


class RunsError(UserError):
    """A runs command that cannot be done as asked; the message says what to do."""


@dataclass(frozen=True)
class RunRow:
    """One run as `runs list` shows it."""

    values: dict[str, Any]
    tags: tuple[str, ...]
    excluded: bool


def add_runs_parser(sub: Any) -> None:
    """The `runs` subcommand and its actions."""
    runs = sub.add_parser(
        "runs",
        help="list, tag, exclude, include or delete runs",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    act = runs.add_subparsers(dest="action", required=True)
    ls = act.add_parser("list", help="runs matching every filter given", epilog=EXAMPLES,
                        formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    for name in LIST_FILTERS:
        ls.add_argument(f"--{name}", help=f"only runs with this {name}")
    ls.add_argument("--tag", help="only runs with this tag")
    shown = ls.add_mutually_exclusive_group()
    shown.add_argument("--excluded", action="store_true", help="only excluded runs")
    shown.add_argument("--included", action="store_true", help="only runs that are not excluded")
    tag = act.add_parser("tag", help="add (or --remove) tags on runs")
    tag.add_argument("runs", nargs="+", metavar="RUN", help="run ids or keys")
    tag.add_argument("--tag", action="append", required=True, help="a tag (repeatable)")
    tag.add_argument("--remove", action="store_true", help="take the tags off instead")
    for name, text in (("exclude", "leave runs out of every analysis"), ("include", "take runs back in")):
        act.add_parser(name, help=text).add_argument("runs", nargs="+", metavar="RUN", help="run ids or keys")
    delete = act.add_parser("delete", help="remove runs and all their rows (without --yes: list them)")
    delete.add_argument("runs", nargs="+", metavar="RUN", help="run ids or keys")
    delete.add_argument("--yes", action="store_true", help="really delete")


def resolve_runs(con: duckdb.DuckDBPyConnection, refs: Sequence[str]) -> list[tuple[int, str, str]]:
    """(run_id, run_key, status) of each reference (an id or a key); refuses one that names no run."""
    out: dict[int, tuple[int, str, str]] = {}
    for ref in refs:
        column, value = ("run_id", int(ref)) if ref.isdigit() else ("run_key", ref)
        row = con.execute(f"SELECT run_id, run_key, status FROM runs WHERE {column} = ?", [value]).fetchone()
        if row is None:
            raise RunsError(f"no run {ref!r} in this warehouse; see: python -m warehouse runs list")
        out[int(row[0])] = (int(row[0]), str(row[1]), str(row[2]))
    return list(out.values())


def list_runs(con: duckdb.DuckDBPyConnection, filters: dict[str, Any]) -> list[RunRow]:
    """Runs matching the filters (runs columns by equality; `tag`; `excluded` True/False), by run id."""
    where, params = ["TRUE"], []
    for name, value in filters.items():
        if value is None:
            continue
        if name == "tag":
            where.append("list_contains(CAST(json_extract_string(tags, '$[*]') AS VARCHAR[]), ?)")
        elif name == "excluded":
            where.append("excluded = ?")
        elif name in LIST_FILTERS:
            where.append(f'"{name}" = ?')
        else:
            raise RunsError(f"unknown runs filter {name!r}; choose from: {', '.join(LIST_FILTERS)}, tag")
        params.append(value)
    rows = con.execute(
        f"SELECT {', '.join(LISTED)}, tags, excluded FROM runs WHERE {' AND '.join(where)} ORDER BY run_id",
        params,
    ).fetchall()
    return [
        RunRow(dict(zip(LISTED, r[:-2], strict=True)), tuple(json.loads(r[-2])), bool(r[-1])) for r in rows
    ]


def set_tags(
    con: duckdb.DuckDBPyConnection, run_ids: Sequence[int], tags: Sequence[str], remove: bool
) -> None:
    """Add (or remove) tags on runs, in one transaction."""
    bad = [t for t in tags if not t.strip() or "," in t]
    if bad:
        raise RunsError(f"tag {bad[0]!r} is empty or has a comma; give one word or phrase per --tag")
    con.execute("BEGIN TRANSACTION")
    for run_id in run_ids:
        row = con.execute("SELECT tags FROM runs WHERE run_id = ?", [run_id]).fetchone()
        now = list(json.loads(row[0])) if row else []
        new = [t for t in now if t not in tags] if remove else now + [t for t in tags if t not in now]
        con.execute("UPDATE runs SET tags = ? WHERE run_id = ?", [json.dumps(new), run_id])
    con.execute("COMMIT")


def set_excluded(con: duckdb.DuckDBPyConnection, run_ids: Sequence[int], excluded: bool) -> None:
    """Exclude runs from every analysis, or include them again."""
    con.execute(
        f"UPDATE runs SET excluded = ? WHERE run_id IN ({', '.join('?' * len(run_ids))})",
        [excluded, *run_ids],
    )


def row_counts(con: duckdb.DuckDBPyConnection, run_ids: Sequence[int]) -> dict[str, int]:
    """Rows each table holds of these runs."""
    marks = ", ".join("?" * len(run_ids))
    counts = {}
    for table in RUN_TABLES:
        row = con.execute(f"SELECT count(*) FROM {table} WHERE run_id IN ({marks})", list(run_ids)).fetchone()
        counts[table] = int(row[0]) if row else 0
    return counts


def check_not_live(path: Path, runs: Sequence[tuple[int, str, str]]) -> None:
    """Refuse to delete a run whose collector is still at work (or whose last shards await ingest)."""
    for run_id, key, status in runs:
        if status != "running":
            continue
        live = run_liveness(path, key, run_id)
        if live.state != "stale":
            raise RunsError(
                f"run {run_id} is {live.state} ({live.detail}); wait until it ends (or stop its collector), "
                "then delete it"
            )


def delete_runs(con: duckdb.DuckDBPyConnection, run_ids: Sequence[int]) -> dict[str, int]:
    """Remove every row of these runs from every table in one transaction; returns the rows removed."""
    counts = row_counts(con, run_ids)
    marks = ", ".join("?" * len(run_ids))
    con.execute("BEGIN TRANSACTION")
    try:
        for table in RUN_TABLES:
            con.execute(f"DELETE FROM {table} WHERE run_id IN ({marks})", list(run_ids))
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    return counts


def print_runs(rows: Sequence[RunRow]) -> None:
    """The runs as an aligned text table."""
    header = [*LISTED, "tags", "excluded"]
    body = [[*map(str, r.values.values()), ",".join(r.tags), "yes" if r.excluded else ""] for r in rows]
    widths = [max(len(h), *(len(b[i]) for b in body)) for i, h in enumerate(header)] if body else []
    for line in [header, *body] if body else []:
        print("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip())
    print(f"{len(rows)} run(s)")


def runs_command(args: argparse.Namespace, path: Path) -> int:
    """Do one `runs` action; returns the exit status."""
    read_only = args.action == "list" or (args.action == "delete" and not args.yes)
    with duckdb_connection(path, read_only=read_only) as con:
        require_head(con, path)
        if args.action == "list":
            filters = {n: getattr(args, n) for n in (*LIST_FILTERS, "tag")}
            filters["excluded"] = True if args.excluded else False if args.included else None
            print_runs(list_runs(con, filters))
            return 0
        runs = resolve_runs(con, args.runs)
        ids = [r[0] for r in runs]
        if args.action == "tag":
            set_tags(con, ids, args.tag, args.remove)
            done = "removed" if args.remove else "added"
            print(f"{done} tag(s) {', '.join(args.tag)} on run(s) {_ids(ids)}")
        elif args.action in ("exclude", "include"):
            set_excluded(con, ids, args.action == "exclude")
            print(f"run(s) {_ids(ids)} {args.action}d: {_meaning(args.action)}")
        else:
            return _delete(con, path, runs, args.yes)
    return 0


def _delete(con: duckdb.DuckDBPyConnection, path: Path, runs: list[tuple[int, str, str]], yes: bool) -> int:
    check_not_live(path, runs)
    ids = [r[0] for r in runs]
    if not yes:
        counts = row_counts(con, ids)
        print(f"would delete run(s) {_ids(ids)}: " + ", ".join(f"{n} {t}" for t, n in counts.items() if n))
        print("run again with --yes to delete them")
        return 0
    counts = delete_runs(con, ids)
    con.execute("CHECKPOINT")
    for _, key, _ in runs:  # a stale run's staged shards would bring it back at the next ingest
        shutil.rmtree(staging_dir(path) / key, ignore_errors=True)
    print(f"deleted run(s) {_ids(ids)}: " + ", ".join(f"{n} {t}" for t, n in counts.items() if n))
    return 0


def _ids(ids: Sequence[int]) -> str:
    return ", ".join(str(i) for i in ids)


def _meaning(action: str) -> str:
    return "out of every analysis until included" if action == "exclude" else "back in the analyses"


__all__ = ["RUN_TABLES", "add_runs_parser", "delete_runs", "list_runs", "runs_command"]
