"""Opening the warehouse: SQLAlchemy engines for schema work, DuckDB connections for data."""

from __future__ import annotations

import os
import re
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


class WarehouseDamaged(WarehouseError):
    """The file or its write-ahead log is damaged; the message says what, and how to recover."""


class WarehouseInvalidated(WarehouseError):
    """DuckDB closed the database after a fatal error (a full disk during a checkpoint, for one)."""


def is_lock_error(exc: BaseException) -> bool:
    """True when DuckDB refused to open a file because another process holds it."""
    text = str(exc).lower()
    return "could not set lock" in text or "conflicting lock" in text


def damage_of(text: str, path: Path) -> str | None:
    """What DuckDB's error text (lower case) says is damaged, in words, or None when it names no damage."""
    if "corrupt wal file" in text or "failure while replaying wal" in text:
        at = re.search(r"entry at byte position (\d+)", text)
        where = f" (the entry at byte {at.group(1)} fails its checksum)" if at else ""
        return f"its write-ahead log {path.name}.wal cannot be replayed{where}"
    if "corrupt database file" in text:
        at = re.search(r"block at location (\d+)", text)
        return f"the block at byte {at.group(1) if at else '?'} fails its checksum"
    read = re.search(r"could not read enough bytes.*?(\d+) bytes from location (\d+)", text)
    if read:
        end = int(read.group(1)) + int(read.group(2))
        return f"the file ends before byte {end}, which its own index points to (truncated?)"
    return None


def recover_hint(path: Path) -> str:
    """The one sentence every door says about a damaged file."""
    return (
        "it was left as it is: restore it from a backup, or copy what can still be read into a new file "
        f"with: python -m warehouse recover --warehouse {path}"
    )


def warehouse_error_of(exc: BaseException, path: Path) -> WarehouseError | None:
    """A DuckDB error (or SQLAlchemy's wrapper of one) that names damage or invalidation, as a user error."""
    orig = getattr(exc, "orig", None) or exc  # SQLAlchemy keeps DuckDB's own exception in .orig
    text = str(orig).lower()
    what = damage_of(text, path)
    if what is not None:
        return WarehouseDamaged(f"{path} is damaged: {what}; {recover_hint(path)}")
    if "has been invalidated" in text or isinstance(orig, duckdb.FatalException):
        first = str(orig).split("Original error:")[-1].strip().strip('"').splitlines()[0]
        return WarehouseInvalidated(
            f"DuckDB closed {path} after a fatal error ({first}); what was committed is in the file or its "
            f"write-ahead log {path.name}.wal (keep both): fix the cause (free the disk), then open it again"
        )
    return None


@contextmanager
def named_damage(path: Path) -> Iterator[None]:
    """Turn DuckDB's words for a damaged or invalidated file into a WarehouseError; other errors pass."""
    try:
        yield
    except (duckdb.Error, sa.exc.DBAPIError) as exc:
        err = warehouse_error_of(exc, path)
        if err is None:
            raise
        raise err from exc


# New files are written in this storage version, which DuckDB 1.1 and every later release read (1.0.0 cannot
# read its primary-key indexes); DuckDB 2.0's default (storage version number 69) cannot be opened by a 1.x
# CLI. A file keeps the storage version it was created with when a newer DuckDB writes to it later.
STORAGE_VERSION = "v1.0.0"


def _quoted(path: Path) -> str:
    return "'" + str(path).replace("'", "''") + "'"


def create_file(path: Path) -> None:
    """Create an empty DuckDB file in STORAGE_VERSION (a plain connect would use the newest format)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with duckdb.connect() as con:
        con.execute(f"ATTACH {_quoted(path)} AS fsgen_new (STORAGE_VERSION '{STORAGE_VERSION}')")
        con.execute("DETACH fsgen_new")


def storage_version(path: Path) -> str | None:
    """The storage version a file is written in, e.g. 'v1.0.0+' (None when DuckDB does not say)."""
    check_warehouse_file(path)
    with duckdb.connect() as con:
        try:
            with named_damage(path):
                con.execute(f"ATTACH {_quoted(path)} AS fsgen_probe (READ_ONLY)")
        except duckdb.IOException as exc:
            if is_lock_error(exc):
                raise WarehouseLocked(f"{path} is open in another process ({exc})") from exc
            raise
        rows = con.execute(
            "SELECT tags FROM duckdb_databases() WHERE database_name = 'fsgen_probe'"
        ).fetchall()
        con.execute("DETACH fsgen_probe")
    tags = rows[0][0] if rows else {}
    version = tags.get("storage_version") if isinstance(tags, dict) else None
    return str(version) if version else None


def needs_storage_conversion(path: Path) -> bool:
    """True when a file is written in a storage version newer than DuckDB 1.x reads (2.0 and later)."""
    found = re.match(r"v(\d+)\.", storage_version(path) or "")
    return found is not None and int(found.group(1)) >= 2


def convert_storage(path: Path) -> bool:
    """Rewrite a file in STORAGE_VERSION (ATTACH + COPY FROM DATABASE, then an atomic rename).

    Needs the file free of other processes; returns False when it already is in a version 1.x reads.
    """
    if not path.exists() or not needs_storage_conversion(path):
        return False
    with duckdb_connection(path) as con:
        con.execute("CHECKPOINT")  # fold the write-ahead log into the file before copying it
    tmp = path.with_name(f".{path.name}.convert")
    tmp.unlink(missing_ok=True)
    try:
        with duckdb.connect() as con:
            con.execute(f"ATTACH {_quoted(path)} AS fsgen_src (READ_ONLY)")
            con.execute(f"ATTACH {_quoted(tmp)} AS fsgen_dst (STORAGE_VERSION '{STORAGE_VERSION}')")
            con.execute("COPY FROM DATABASE fsgen_src TO fsgen_dst")
            con.execute("DETACH fsgen_dst")
            con.execute("DETACH fsgen_src")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
        tmp.with_name(tmp.name + ".wal").unlink(missing_ok=True)
    return True


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
    if not read_only and not path.exists():
        create_file(path)
    return sa.create_engine(url_for(path), connect_args=connect_args, poolclass=sa.pool.NullPool)


def require_file(path: Path) -> None:
    """Refuse a warehouse path with no file behind it (so a command that only reads or rewrites one never
    leaves an empty file behind)."""
    if not path.exists():
        raise WarehouseError(
            f"no warehouse at {path}; create it with: python -m warehouse upgrade --warehouse {path}"
        )


def open_duckdb(path: Path, *, read_only: bool = False) -> duckdb.DuckDBPyConnection:
    """A raw DuckDB connection; raises WarehouseLocked instead of DuckDB's IO error."""
    if read_only:
        require_file(path)
    check_warehouse_file(path)
    try:
        if not read_only and not path.exists():
            create_file(path)
        with named_damage(path):
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
