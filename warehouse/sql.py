"""`python -m warehouse sql`: the SQL door without a DuckDB CLI; the file is opened read-only."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TextIO

import duckdb

from warehouse.db import open_duckdb

PROMPT = "fsgen> "
MAX_ROWS = 200


def run_statements(con: duckdb.DuckDBPyConnection, text: str, out: TextIO, max_rows: int = MAX_ROWS) -> int:
    """Run every statement in `text`, printing each result as a table; returns how many failed."""
    failed = 0
    try:
        statements = con.extract_statements(text)
    except duckdb.Error as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for statement in statements:
        try:
            rel = con.sql(statement.query)
            # a boxed table like the DuckDB CLI's, at most max_rows rows (rendering runs the query)
            text = None if rel is None else str(rel.limit(max_rows))
        except duckdb.Error as exc:
            print(f"error: {exc}", file=sys.stderr)
            failed += 1
            continue
        if text is not None:
            out.write(text + "\n")
    return failed


def repl(con: duckdb.DuckDBPyConnection, stdin: TextIO, out: TextIO) -> int:
    """Read statements ending in ';' from a terminal until EOF or `.quit`; returns how many failed."""
    failed, buffer = 0, ""
    while True:
        out.write(PROMPT if not buffer else "  ...> ")
        out.flush()
        line = stdin.readline()
        if not line or line.strip() in (".quit", ".exit"):
            return failed
        buffer += line
        if buffer.rstrip().endswith(";"):
            failed += run_statements(con, buffer, out)
            buffer = ""


def sql_door(path: Path, query: str | None, stdin: TextIO = sys.stdin, out: TextIO = sys.stdout) -> int:
    """Run `query` (or stdin: a REPL on a terminal, else a script) against the file, read-only."""
    con = open_duckdb(path, read_only=True)
    try:
        if query is not None:
            failed = run_statements(con, query, out)
        elif stdin.isatty():
            out.write(f"{path} (read-only); end statements with ';', quit with .quit or Ctrl-D\n")
            failed = repl(con, stdin, out)
        else:
            failed = run_statements(con, stdin.read(), out)
    finally:
        con.close()
    return 1 if failed else 0
