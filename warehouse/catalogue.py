"""The schema catalogue: every table, column, Arrow type and view of the warehouse, derived from the models.

The SQLAlchemy models (`warehouse/models.py`) are the one definition of the tables; the migrations carry
them to each file. Everything else that names columns reads them from here: the staged shards' Arrow
schemas (`EVENT_SCHEMA`, `SAMPLE_SCHEMA`), which staged columns a shard must have (the NOT NULL ones), the
export's table list, the API's event models and the views (`warehouse/views.py`). A new column of a model
(with its migration) reaches all of them by itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pyarrow as pa
import sqlalchemy as sa

from warehouse.models import EXPORT_PARTITION, Base
from warehouse.views import VIEW_NAMES, VIEWS

__all__ = [
    "EVENT_SCHEMA",
    "EXPORT_TABLES",
    "SAMPLE_SCHEMA",
    "VIEWS",
    "VIEW_NAMES",
    "arrow_table",
    "arrow_type",
    "columns",
    "python_type",
    "required_columns",
    "staged_schema",
]

# Arrow type of each SQLAlchemy column type the models use (DuckDB: FLOAT is 32-bit, DOUBLE 64-bit).
ARROW_OF: tuple[tuple[type[sa.types.TypeEngine[Any]], pa.DataType], ...] = (
    (sa.SmallInteger, pa.int16()),
    (sa.BigInteger, pa.int64()),
    (sa.Integer, pa.int32()),
    (sa.Double, pa.float64()),
    (sa.Float, pa.float32()),
    (sa.Boolean, pa.bool_()),
    (sa.DateTime, pa.timestamp("us")),
    (sa.Text, pa.string()),
)


def arrow_type(column: sa.Column[Any]) -> pa.DataType:
    """The Arrow type a staged column must have to land in `column`."""
    for sa_type, arrow in ARROW_OF:  # subclasses first: SmallInteger and BigInteger are Integers
        if isinstance(column.type, sa_type):
            return arrow
    raise TypeError(f"no Arrow type for {column.type!r}")  # a model column of a new type: a bug here


def columns(table: str) -> list[sa.Column[Any]]:
    """The columns of a warehouse table, in the model's order."""
    return list(Base.metadata.tables[table].columns)


def python_type(column: sa.Column[Any]) -> Any:
    """The Python type of a column's values (`T | None` where it may be NULL)."""
    tp: Any = column.type.python_type
    return tp | None if column.nullable else tp


def staged_schema(table: str) -> pa.Schema:
    """The Arrow schema of a table's rows as the collector stages them: every column but `run_id`, which
    the ingester sets; a NOT NULL column is a non-nullable field."""
    return pa.schema(
        [
            pa.field(c.name, arrow_type(c), nullable=bool(c.nullable))
            for c in columns(table)
            if c.name != "run_id"
        ]
    )


def required_columns(schema: pa.Schema) -> tuple[str, ...]:
    """The fields a staged file must carry: the NOT NULL ones (a missing nullable column lands as NULL)."""
    return tuple(f.name for f in schema if not f.nullable)


def arrow_table(data: Mapping[str, Any], schema: pa.Schema) -> pa.Table:
    """An Arrow table of `data`'s columns in `schema`'s order and types; a NOT NULL column may not be
    missing and a name the schema lacks is refused (a caller's bug, not a user's)."""
    unknown = sorted(set(data) - set(schema.names))
    missing = sorted(set(required_columns(schema)) - set(data))
    if unknown or missing:
        raise ValueError(f"columns not in the schema: {unknown}; required columns missing: {missing}")
    fields = [f for f in schema if f.name in data]
    return pa.table({f.name: data[f.name] for f in fields}).cast(pa.schema(fields))


def _export_tables() -> tuple[tuple[str, str | None], ...]:
    """(table, partition column or None) for every table of the models, in dependency order."""
    return tuple((t.name, t.info.get(EXPORT_PARTITION)) for t in Base.metadata.sorted_tables)


EVENT_SCHEMA = staged_schema("token_events")
SAMPLE_SCHEMA = staged_schema("samples")
CYCLE_SCHEMA = staged_schema("spec_cycles")
EXPORT_TABLES = _export_tables()
