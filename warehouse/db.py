"""Opening the warehouse: SQLAlchemy engines for schema work, DuckDB connections for data."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb
import sqlalchemy as sa

from warehouse.errors import UserError

DUCKDB_MAGIC = b"DUCK"  # bytes 8-12 of every DuckDB database file


class WarehouseError(UserError):
    """A problem with the warehouse file that the user can fix; the message says how."""


class WarehouseLocked(WarehouseError):
    """Another process holds the DuckDB file; DuckDB allows one writer or many readers, never both."""


def is_lock_error(exc: BaseException) -> bool:
    """True when DuckDB refused to open a file because another process holds it."""
    text = str(exc).lower()
    return "could not set lock" in text or "conflicting lock" in text


def check_warehouse_file(path: Path) -> None:
    """Refuse a path that exists but is not a DuckDB file (a folder, an empty or a foreign file)."""
    if not path.exists():
        return
    if path.is_dir():
        what = "a folder"
    else:
        with open(path, "rb") as fh:
            head = fh.read(12)
        if head[8:12] == DUCKDB_MAGIC:
            return
        what = "an empty file" if not head else "a file that is not a DuckDB database"
    raise WarehouseError(
        f"{path} is {what}, not an fsgen warehouse; pass the path of a warehouse with --warehouse "
        f"(or FSGEN_WAREHOUSE), or create a new one with: python -m warehouse upgrade --warehouse NEW.duckdb"
    )


def url_for(path: Path) -> str:
    """SQLAlchemy URL of a DuckDB file."""
    return f"duckdb:///{path}"


def make_engine(path: Path, *, read_only: bool = False) -> sa.Engine:
    """A SQLAlchemy engine on the file; read-only engines cannot write at the DuckDB level."""
    check_warehouse_file(path)
    connect_args = {"read_only": True} if read_only else {}
    return sa.create_engine(url_for(path), connect_args=connect_args, poolclass=sa.pool.NullPool)


def open_duckdb(path: Path, *, read_only: bool = False) -> duckdb.DuckDBPyConnection:
    """A raw DuckDB connection; raises WarehouseLocked instead of DuckDB's IO error."""
    if read_only and not path.exists():
        raise WarehouseError(
            f"no warehouse at {path}; create it with: python -m warehouse upgrade --warehouse {path}"
        )
    check_warehouse_file(path)
    try:
        return duckdb.connect(str(path), read_only=read_only)
    except duckdb.IOException as exc:
        if is_lock_error(exc):
            raise WarehouseLocked(f"{path} is open in another process ({exc})") from exc
        raise


@contextmanager
def duckdb_connection(path: Path, *, read_only: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
    """Open, yield, always close: a held file blocks every other process."""
    con = open_duckdb(path, read_only=read_only)
    try:
        yield con
    finally:
        con.close()
