"""The one door analytics reads through: a warehouse path (opened read-only) or an open DuckDB connection.

Heavy aggregation runs in DuckDB (the schema's views or parameterised SQL); the reduced result crosses into
polars as Arrow. Identifiers that callers choose (group-by columns, filters) are checked against a fixed list
of `runs` columns here, so no caller-supplied text ever reaches SQL unquoted.

Every analysis reads one **scope** of runs, set here for all of them by `runs_where`: one experiment (the
most recent unless `filters["experiment"]` names one, or a list; None: every experiment), runs not
excluded (`filters["excluded"]`: True for only excluded ones, None for both) and pairs, not baselines
(`filters["baseline"]`: True for only the models alone, None for both). Runs named by `run_id` are
answered whatever their experiment, exclusion or kind.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import polars as pl
from sqlalchemy import BigInteger, Double, Integer

from warehouse.db import WarehouseError, open_duckdb
from warehouse.errors import UserError
from warehouse.migrate import require_head
from warehouse.models import Run
from warehouse.settings import resolve_warehouse
from warehouse.vocabulary import NOT_DEFINING_SETTINGS, method_params, method_term

Source = str | Path | duckdb.DuckDBPyConnection
Filters = Mapping[str, Any]

# Columns of `runs` that analytics may group or filter by, from the model (high-cardinality guards are the
# API's job).
RUN_COLUMNS: tuple[str, ...] = tuple(c.name for c in Run.__table__.columns if c.info.get("group_by", True))

_POLARS_TYPES: dict[type, pl.DataType] = {BigInteger: pl.Int64(), Integer: pl.Int32(), Double: pl.Float64()}


# Filter keys with a default: absent means the default scope, None means no restriction.
SCOPE_KEYS = ("experiment", "excluded", "baseline")
# A model alone, not a pair: System 2 is System 1, or never consulted (DESIGN.md's baseline run).
BASELINE = "({a}.router = 'never' OR {a}.llm = {a}.slm)"
# The most recent experiment: that of the newest run still in the analyses.
# (arg_max over (created_at, run_id): the newest, ties to the larger id; planned in half the time of an
# ORDER BY ... LIMIT 1, and every scoped query holds it.)
LATEST_EXPERIMENT = "(SELECT arg_max(experiment, (created_at, run_id)) FROM runs WHERE NOT excluded)"
# Its value, when the caller has read it on the data the analysis reads (`latest_experiment_is`): scoped
# statements then compare with a parameter instead of planning the sub-select (about 1 ms a statement).
_KNOWN_LATEST: ContextVar[str | None] = ContextVar("fsgen_latest_experiment", default=None)


class AnalyticsError(UserError):
    """A question analytics cannot answer as asked; the message says what to change."""

    code = "invalid_parameter"  # the API's error code for it (a 400)


class ConflictingParameters(AnalyticsError):
    """Two parameters given together that exclude each other."""

    code = "conflicting_parameters"


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


@contextmanager
def latest_experiment_is(name: str | None) -> Iterator[None]:
    """Within: the most recent experiment is `name`, read with `LATEST_EXPERIMENT` on the same data (the API
    server reads it once per ingest); None: unknown, so each statement selects it itself."""
    token = _KNOWN_LATEST.set(name)
    try:
        yield
    finally:
        _KNOWN_LATEST.reset(token)


def latest_experiment(source: Source) -> str | None:
    """The most recent experiment (the default scope's), None in an empty warehouse."""
    known = _KNOWN_LATEST.get()
    if known is not None:
        return known
    rows = query_rows(source, f"SELECT {LATEST_EXPERIMENT}")
    return rows[0][0] if rows else None


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


# Queries run through `execute`, which plans a statement once; `con.sql()` binds it to describe a relation,
# then plans it again to run it (1-4 ms more a statement on the scoped joins here). Arrow from such a result
# copies the rows once, which DuckDB warns about; analyses read small results, so the copy is the cheaper.
warnings.filterwarnings("ignore", message="Arrow output on a DB-API result", category=UserWarning)


def query(source: Source, sql: str, params: Sequence[Any] | None = None) -> pl.DataFrame:
    """Run one parameterised query and return its result as a polars DataFrame (via Arrow)."""
    with connect(source) as con:
        table = con.execute(sql, list(params) if params else []).to_arrow_table()
    frame = pl.from_arrow(table)
    assert isinstance(frame, pl.DataFrame)
    return frame


def query_arrays(source: Source, sql: str, params: Sequence[Any] | None = None) -> dict[str, np.ndarray]:
    """Run one parameterised query and return its columns as NumPy arrays (numbers per row, no polars frame
    needed: 1-2 ms less for 40,000 rows; a column with nulls is a masked array)."""
    with connect(source) as con:
        return dict(con.execute(sql, list(params) if params else []).fetchnumpy())


def query_rows(source: Source, sql: str, params: Sequence[Any] | None = None) -> list[tuple[Any, ...]]:
    """Run one parameterised query and return its rows as tuples (a few rows read field by field)."""
    with connect(source) as con:
        return con.execute(sql, list(params) if params else []).fetchall()


def table_columns(source: Source, table: str) -> frozenset[str]:
    """Column names of a table or view of the connection's database; empty when it does not exist."""
    # The catalogue's own entry, not a query of duckdb_columns(): 0.15 ms against 0.6-1.5 ms a probe, and
    # a speculative answer probes four times.
    with connect(source) as con:
        try:
            return frozenset(con.table(table).columns)
        except duckdb.CatalogException:
            return frozenset()


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


def scope_clauses(filters: Filters, alias: str = "r") -> tuple[list[str], list[Any]]:
    """The scope's clauses (experiment, exclusion, baselines) for the keys `filters` leaves at default,
    and their parameters; none of the defaults where `filters` names runs by `run_id` (asked for, they are
    answered)."""
    a = alias
    clauses: list[str] = []
    params: list[Any] = []
    if "run_id" in filters:
        filters = {"experiment": None, "excluded": None, "baseline": None, **filters}
    if "experiment" not in filters:
        known = _KNOWN_LATEST.get()
        clauses.append(f"{a}.experiment = {LATEST_EXPERIMENT if known is None else '?'}")
        params.extend(() if known is None else (known,))
    excluded = filters.get("excluded", False)
    if excluded is not None:
        clauses.append(f"{'' if excluded else 'NOT '}{a}.excluded")
    baseline = filters.get("baseline", False)
    if baseline is not None:
        clauses.append(f"{'' if baseline else 'NOT '}{BASELINE.format(a=a)}")
    return clauses, params


def scoped(filters: Filters | None, experiment: str | None = None) -> dict[str, Any]:
    """`filters` with the experiment set when one is named (the doors' `experiment=` argument)."""
    out = dict(filters or {})
    if experiment is not None:
        out["experiment"] = experiment
    return out


def runs_where(filters: Filters | None, alias: str = "r") -> tuple[str, list[Any]]:
    """A parameterised `WHERE` over runs columns (scalar = equality, sequence = IN, None = IS NULL) within
    the scope (module docstring): one experiment, no excluded runs, no baselines unless asked for."""
    filters = filters or {}
    clauses, params = scope_clauses(filters, alias)
    for col, value in filters.items():
        if col in ("excluded", "baseline") or (col == "experiment" and value is None):
            continue
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
    return "WHERE " + (" AND ".join(clauses) or "TRUE"), params


def events_where(filters: Filters | None, alias: str = "e") -> tuple[str, list[Any]]:
    """Restrict token events (or any per-run rows) to the runs in scope matching `filters` (a semi-join)."""
    where, params = runs_where(filters, alias="rf")
    return f"WHERE {alias}.run_id IN (SELECT rf.run_id FROM runs rf {where})", params


def experiments(source: Source) -> pl.DataFrame:
    """Every experiment with its runs (excluded ones counted apart) and newest run, the most recent first."""
    return query(
        source,
        f"""SELECT experiment, CAST(count(*) FILTER (WHERE NOT excluded) AS BIGINT) AS runs,
                   CAST(count(*) FILTER (WHERE excluded) AS BIGINT) AS excluded,
                   max(created_at) AS latest, experiment = {LATEST_EXPERIMENT} AS is_default
            FROM runs GROUP BY experiment ORDER BY latest DESC, experiment""",
    )


def require_experiment(source: Source, name: str | None) -> None:
    """Refuse an experiment the warehouse does not hold (a typo would otherwise read as an empty one);
    None (the most recent) passes."""
    if name is None:
        return
    known = experiments(source)["experiment"].to_list()
    if name not in known:
        have = ", ".join(repr(e) for e in known) or "none (no runs yet)"
        raise AnalyticsError(f"no experiment {name!r} in this warehouse; it has: {have}")


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


def own_settings(settings: dict[str, Any]) -> dict[str, Any]:
    """A run's recorded settings without those only another method reads (λ means nothing to a
    speculative run; K nothing to an oracle one): `warehouse.vocabulary`'s method terms."""
    term = method_term(str(settings.get("method")))
    others = set(method_params()) - set(term.params if term else ())
    return {k: v for k, v in settings.items() if k not in others}


# Settings a label never names: the columns every table shows already, and those that define no run (a batch
# size or a calibration tells no two setups apart).
SHOWN_SETTINGS = ("llm", "slm", "slm_tuned", "method", "router", "dataset", *NOT_DEFINING_SETTINGS)


def runs_in_scope(source: Source, filters: Filters | None, columns: Sequence[str]) -> pl.DataFrame:
    """Columns (named by the code, not a caller) of the runs in scope matching `filters`, by run_id."""
    where, params = runs_where(filters)
    cols = ", ".join(f'r."{c}"' for c in columns)
    return query(source, f"SELECT {cols} FROM runs r {where} ORDER BY r.run_id", params)


def setting_labels(
    source: Source, key: str = "identity", filters: Filters | None = None, runs: pl.DataFrame | None = None
) -> pl.DataFrame:
    """Per `identity` (or `setup`) of the runs in scope: the settings that tell it from the others of its
    method, as `name=value` text (`settings`): the same within each, different between them, and read by
    its method (empty when its method has one). The method itself, the pair and the dataset are named
    elsewhere in every table, so never here. `runs`: the caller's `runs_in_scope` frame of the same filters
    (with `key` and settings), read instead of querying again."""
    if key not in ("identity", "setup"):
        raise AnalyticsError(f"labels are by identity or setup, not {key!r}")
    runs = runs_in_scope(source, filters, (key, "settings")) if runs is None else runs
    labels = labels_by_key(runs.select(key, "settings").iter_rows())
    return pl.DataFrame(
        {key: list(labels), "settings": list(labels.values())}, schema={key: pl.Utf8, "settings": pl.Utf8}
    )


def labels_by_key(runs: Iterable[tuple[Any, str | None]]) -> dict[Any, str]:
    """`setting_labels`' labels from each run's (key, settings JSON), as a dict (no frame: a caller that
    holds the runs' rows reads them directly)."""
    by_key: dict[Any, list[dict[str, Any]]] = {}
    for k, text in runs:
        by_key.setdefault(k, []).append(own_settings(json.loads(text or "{}")))
    values: dict[Any, dict[str, Any]] = {}
    for k, rows in by_key.items():
        names = set().union(*rows) - set(SHOWN_SETTINGS)
        values[k] = {n: rows[0].get(n) for n in names if all(r.get(n) == rows[0].get(n) for r in rows)}
    method = {k: rows[0].get("method") for k, rows in by_key.items()}
    labels = {}
    for k, v in values.items():
        peers = [w for j, w in values.items() if method[j] == method[k]]
        telling = {n for w in peers for n in w if len({repr(u.get(n)) for u in peers}) > 1}
        labels[k] = " ".join(f"{n}={v[n]}" for n in sorted(telling) if n in v)
    return labels
