"""A staged file's Arrow columns checked against its warehouse table: cast what is safe, name what is not.

A shard staged by another fsgen version may carry a column as int64 where the table holds INTEGER, or as
float64 where it holds FLOAT: such values are cast when every value fits (pyarrow's safe cast). A column
of another kind (text where a number belongs), or one the table does not have, makes the shard unfit: the
ingester quarantines it with the reason, and the other shards go on.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import sqlalchemy as sa

from warehouse.models import Base

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


class ShardSchemaError(ValueError):
    """A staged file whose columns cannot become its table's; the message is the quarantine reason."""


def arrow_type(column: sa.Column[object]) -> pa.DataType:
    """The Arrow type a staged column must have to land in `column`."""
    for sa_type, arrow in ARROW_OF:  # subclasses first: SmallInteger and BigInteger are Integers
        if isinstance(column.type, sa_type):
            return arrow
    raise TypeError(f"no Arrow type for {column.type!r}")  # a model column of a new type: a bug here


def _kind(t: pa.DataType) -> str:
    if pa.types.is_integer(t):
        return "integer"
    if pa.types.is_floating(t):
        return "float"
    if pa.types.is_boolean(t):
        return "boolean"
    if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t):
        return "text"
    if pa.types.is_null(t):
        return "null"
    return str(t)


def castable(have: pa.DataType, want: pa.DataType) -> bool:
    """True when values of `have` may become `want` by a checked cast (same kind, int to float, all-null)."""
    a, b = _kind(have), _kind(want)
    return a == b or a == "null" or (a, b) == ("integer", "float")


def conform(data: pa.Table, table: str, file: str) -> pa.Table:
    """`data` with each column in its table's Arrow type; ShardSchemaError names what cannot be cast."""
    columns = Base.metadata.tables[table].columns
    out = data
    for i, field in enumerate(data.schema):
        if field.name not in columns:
            raise ShardSchemaError(f"{file} has a column {field.name!r} that table {table} does not have")
        want = arrow_type(columns[field.name])
        if field.type == want:
            continue
        if not castable(field.type, want):
            raise ShardSchemaError(
                f"{file} column {field.name!r} is {field.type}; table {table} needs {want}, "
                "which it cannot be cast to safely"
            )
        try:
            cast = data.column(i).cast(want, safe=True)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            raise ShardSchemaError(
                f"{file} column {field.name!r} is {field.type} with values that do not fit {want} ({exc})"
            ) from exc
        out = out.set_column(i, pa.field(field.name, want), cast)
    return out
