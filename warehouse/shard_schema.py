"""A staged file's Arrow columns checked against its warehouse table: cast what is safe, name what is not.

A shard staged by another fsgen version may carry a column as int64 where the table holds INTEGER, or as
float64 where it holds FLOAT: such values are cast when every value fits (pyarrow's safe cast). A column
of another kind (text where a number belongs), or one the table does not have, makes the shard unfit: the
ingester quarantines it with the reason, and the other shards go on.
"""

from __future__ import annotations

import pyarrow as pa

from warehouse.catalogue import arrow_type
from warehouse.models import Base


class ShardSchemaError(ValueError):
    """A staged file whose columns cannot become its table's; the message is the quarantine reason."""


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
