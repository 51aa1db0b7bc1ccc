"""The one door analytics reads through: a warehouse path (opened read-only) or an open DuckDB connection.

Heavy aggregation runs in DuckDB (the schema's views or parameterised SQL); the reduced result crosses into
polars as Arrow. Identifiers that callers choose (group-by columns, filters) are checked against a fixed list
of `runs` columns here, so no caller-supplied text ever reaches SQL unquoted.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import duckdb
import polars as pl
from sqlalchemy import BigInteger, Double, Integer

from warehouse.db import WarehouseError, open_duckdb
from warehouse.errors import UserError
from warehouse.migrate import require_head
from warehouse.models import Run
from warehouse.settings import resolve_warehouse

Source = str | Path | duckdb.DuckDBPyConnection
Filters = Mapping[str, Any]

# Columns of `runs` that analytics may group or filter by, from the model (high-cardinality guards are the
# API's job).
RUN_COLUMNS: tuple[str, ...] = tuple(c.name for c in Run.__table__.columns if c.info.get("group_by", True))

_POLARS_TYPES: dict[type, pl.DataType] = {BigInteger: pl.Int64(), Integer: pl.Int32(), Double: pl.Float64()}


class AnalyticsError(UserError):
    """A question analytics cannot answer as asked; the message says what to change."""


@contextmanager
def connect(source: Source) -> Iterator[duckdb.DuckDBPyConnection]:
    """Yield a connection: the caller's own (left open) or the file's, opened read-only and closed after."""
    if isinstance(source, duckdb.DuckDBPyConnection):
        yield source
        return
    con = open_duckdb(Path(source), read_only=True)
    try:
        yield con
    finally:
        con.close()


def open_warehouse(path: str | Path | None = None) -> duckdb.DuckDBPyConnection:
    """Open a warehouse read-only for a long job, refusing a missing file or one whose schema is behind."""
    resolved = resolve_warehouse(path)
    if not resolved.exists():
        raise WarehouseError(
            f"no warehouse at {resolved}; pass --warehouse PATH, set FSGEN_WAREHOUSE, "
            "or collect one with: python -m collector.run"
        )
    con = open_duckdb(resolved, read_only=True)
    # On a cursor: require_head leaves a half-read execute() result, which DuckDB 2 lets block the connection.
    check = con.cursor()
    try:
        require_head(check, resolved)
    except WarehouseError:
        con.close()
        raise
    finally:
        check.close()
    return con


def query(source: Source, sql: str, params: Sequence[Any] | None = None) -> pl.DataFrame:
    """Run one parameterised query and return its result as a polars DataFrame (via Arrow)."""
    with connect(source) as con:
        table = con.sql(sql, params=list(params) if params else None).to_arrow_table()
    frame = pl.from_arrow(table)
    assert isinstance(frame, pl.DataFrame)
    return frame


def table_columns(source: Source, table: str) -> frozenset[str]:
    """Column names of a table or view in the main schema; empty when it does not exist."""
    rows = query(
        source,
        "SELECT column_name AS name FROM information_schema.columns "
        "WHERE table_name = ? AND table_schema = 'main'",
        [table],
    )
    return frozenset(rows["name"].to_list())


def run_column_dtype(column: str) -> pl.DataType:
    """The polars type a runs column arrives as (for typed empty frames)."""
    col = Run.__table__.columns.get(column)
    return pl.Utf8() if col is None else _POLARS_TYPES.get(type(col.type), pl.Utf8())


def check_group_by(group_by: Sequence[str]) -> tuple[str, ...]:
    """Validate group-by columns against `runs`; raise AnalyticsError naming what is allowed."""
    if isinstance(group_by, str):
        group_by = [group_by]
    cols = tuple(group_by)
    if not cols:
        raise AnalyticsError("group_by is empty; give at least one runs column, e.g. ['run_id']")
    unknown = [c for c in cols if c not in RUN_COLUMNS]
    if unknown:
        raise AnalyticsError(f"unknown group_by column(s) {unknown}; choose from: {', '.join(RUN_COLUMNS)}")
    if len(set(cols)) != len(cols):
        raise AnalyticsError(f"group_by repeats a column: {list(cols)}")
    return cols


def group_select(group_by: Sequence[str], alias: str = "r") -> str:
    """`r.llm, r.slm` for validated group-by columns."""
    return ", ".join(f'{alias}."{c}"' for c in check_group_by(group_by))


def runs_where(filters: Filters | None, alias: str = "r") -> tuple[str, list[Any]]:
    """A parameterised `WHERE` over runs columns: scalar = equality, sequence = IN, None = IS NULL."""
    if not filters:
        return "", []
    clauses: list[str] = []
    params: list[Any] = []
    for col, value in filters.items():
        if col not in RUN_COLUMNS:
            raise AnalyticsError(f"unknown filter column {col!r}; choose from: {', '.join(RUN_COLUMNS)}")
        ref = f'{alias}."{col}"'
        if value is None:
            clauses.append(f"{ref} IS NULL")
        elif isinstance(value, Sequence) and not isinstance(value, str):
            if not value:
                raise AnalyticsError(f"filter {col!r} is an empty list; drop it or give values")
            clauses.append(f"{ref} IN ({', '.join('?' for _ in value)})")
            params.extend(value)
        else:
            clauses.append(f"{ref} = ?")
            params.append(value)
    return "WHERE " + " AND ".join(clauses), params


def events_where(filters: Filters | None, alias: str = "e") -> tuple[str, list[Any]]:
    """Restrict token events to the runs matching `filters` (a semi-join on runs), or nothing."""
    where, params = runs_where(filters, alias="rf")
    if not where:
        return "", []
    return f"WHERE {alias}.run_id IN (SELECT rf.run_id FROM runs rf {where})", params


def profile_sums(
    source: Source, view: str, bin_cols: Sequence[str], group_by: Sequence[str], filters: Filters | None
) -> pl.DataFrame:
    """Tokens and mismatches of a per-run profile view (`position_profile`, `entropy_profile`) by group."""
    cols = check_group_by(group_by)
    out = ", ".join(f'"{c}"' for c in cols)
    bins = ", ".join(f"p.{c}" for c in bin_cols)
    where, params = runs_where(filters)
    return query(
        source,
        f"""SELECT {group_select(cols)}, {bins},
                   CAST(sum(p.tokens) AS BIGINT) AS tokens, CAST(sum(p.mismatches) AS BIGINT) AS mismatches
            FROM {view} p JOIN runs r ON r.run_id = p.run_id {where}
            GROUP BY ALL ORDER BY {out}, p.bin""",
        params,
    )
