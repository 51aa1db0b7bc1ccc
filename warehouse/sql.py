"""`python -m warehouse sql`: the SQL door without a DuckDB CLI; the file is opened read-only.

Results print as boxed tables (on a terminal at most `MAX_ROWS` rows and the columns that fit; piped or
written to a file, every row and column), or in a machine format: `csv`, `json` (an array of row objects
per result) or `parquet` (one result; to `--out FILE` or a pipe).
"""

from __future__ import annotations

import contextlib
import io
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Literal, TextIO, get_args

import duckdb
import pyarrow.parquet as pq

from warehouse.db import WarehouseError, named_damage, open_duckdb, warehouse_error_of

PROMPT = "fsgen> "
MAX_ROWS = 200
Format = Literal["table", "csv", "json", "parquet"]
FORMATS: tuple[str, ...] = get_args(Format)


def _table_text(rel: duckdb.DuckDBPyRelation, terminal: bool) -> str:
    """A boxed table like the DuckDB CLI's: cut to the screen on a terminal, whole otherwise."""
    if terminal:
        return str(rel.limit(MAX_ROWS))  # rendering runs the query
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        rel.show(max_width=1 << 30, max_rows=1 << 62, max_col_width=1 << 30)
    return buf.getvalue().rstrip("\n")


def write_result(rel: duckdb.DuckDBPyRelation, fmt: Format, out: IO[str] | IO[bytes], terminal: bool) -> None:
    """One statement's result in `fmt` (text formats to a text stream, parquet to a binary one)."""
    if fmt == "parquet":
        pq.write_table(rel.to_arrow_table(), out, compression="zstd")
        return
    text_out: IO[str] = out  # type: ignore[assignment]
    if fmt == "table":
        text_out.write(_table_text(rel, terminal) + "\n")
        return
    frame = rel.pl()
    text_out.write(frame.write_csv() if fmt == "csv" else frame.write_json() + "\n")


def run_statements(
    con: duckdb.DuckDBPyConnection,
    text: str,
    out: IO[str] | IO[bytes],
    fmt: Format = "table",
    terminal: bool = False,
    path: Path | None = None,
) -> int:
    """Run every statement in `text`, writing each result; returns how many failed.

    A statement that meets damage in the file stops the rest: WarehouseDamaged, one line at the door.
    """
    failed = 0
    try:
        statements = con.extract_statements(text)
    except duckdb.Error as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    written = 0
    for statement in statements:
        try:
            rel = con.sql(statement.query)
            if rel is None:
                continue
            if fmt == "parquet" and written:
                raise WarehouseError("a Parquet file holds one result: give one query that returns rows")
            write_result(rel, fmt, out, terminal)
            written += 1
        except duckdb.Error as exc:
            if path is not None and warehouse_error_of(exc, path) is not None:
                raise
            print(f"error: {exc}", file=sys.stderr)
            failed += 1
    return failed


def repl(con: duckdb.DuckDBPyConnection, stdin: TextIO, out: TextIO, path: Path | None = None) -> int:
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
            failed += run_statements(con, buffer, out, terminal=True, path=path)
            buffer = ""


@contextlib.contextmanager
def _sink(fmt: Format, out_path: Path | None, out: TextIO) -> Iterator[IO[str] | IO[bytes]]:
    """Where results go: `out_path` (binary for Parquet), else `out` (its byte stream for Parquet)."""
    if out_path is not None:
        if fmt == "parquet":
            with open(out_path, "wb") as binary:
                yield binary
        else:
            with open(out_path, "w", newline="") as text:
                yield text
        return
    if fmt != "parquet":
        yield out
        return
    if out.isatty():
        raise WarehouseError("Parquet is binary: write it to a file with --out FILE (or pipe it)")
    buffer = getattr(out, "buffer", None)
    if buffer is None:
        raise WarehouseError("Parquet needs a binary output: give --out FILE")
    yield buffer
    buffer.flush()


def sql_door(
    path: Path,
    query: str | None,
    stdin: TextIO | None = None,
    out: TextIO | None = None,
    fmt: Format = "table",
    out_path: Path | None = None,
) -> int:
    """Run `query` (or stdin: a REPL on a terminal, else a script) against the file, read-only, writing
    results in `fmt` to `out_path` or `out` (default: the process's stdin and stdout at call time)."""
    stdin, out = stdin or sys.stdin, out or sys.stdout
    if fmt not in FORMATS:
        raise WarehouseError(f"--format {fmt}: give one of {', '.join(FORMATS)}")
    con = open_duckdb(path, read_only=True)
    try:
        with named_damage(path):
            failed = _run(con, path, query, stdin, out, fmt, out_path)
    finally:
        con.close()
    return 1 if failed else 0


def _run(
    con: duckdb.DuckDBPyConnection,
    path: Path,
    query: str | None,
    stdin: TextIO,
    out: TextIO,
    fmt: Format,
    out_path: Path | None,
) -> int:
    """The REPL on a terminal, else the query or the script; returns how many statements failed."""
    if query is None and stdin.isatty():
        if fmt != "table" or out_path is not None:
            raise WarehouseError("--format and --out need a query (an argument, or a script on stdin)")
        out.write(f"{path} (read-only); end statements with ';', quit with .quit or Ctrl-D\n")
        return repl(con, stdin, out, path)
    text = query if query is not None else stdin.read()
    terminal = out_path is None and out.isatty()
    with _sink(fmt, out_path, out) as sink:
        return run_statements(con, text, sink, fmt, terminal, path)
