"""Analytics results (polars frames, frozen dataclasses) to response models; the shared field types."""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Annotated, Any

import numpy as np
import polars as pl
from pydantic import AwareDatetime, BaseModel, BeforeValidator, Field, create_model

from analytics.frames import FrameSchema
from warehouse.catalogue import columns, python_type


def _as_utc(value: Any) -> Any:
    """DuckDB TIMESTAMPs are naive UTC: attach the offset so they serialise as ISO 8601 with +00:00."""
    if isinstance(value, datetime) and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


UtcDatetime = Annotated[AwareDatetime, BeforeValidator(_as_utc)]
GroupValue = str | int | float | bool | None
Group = Annotated[dict[str, GroupValue], Field(description="the run columns this row is grouped by")]


def clean(value: Any) -> Any:
    """JSON-safe: NaN and ±inf become null, numpy scalars become Python numbers, tuples lists."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, (list, tuple)):
        return [clean(v) for v in value]
    if isinstance(value, dict):
        return {k: clean(v) for k, v in value.items()}
    return value


def records(frame: pl.DataFrame, keys: Sequence[str] = ()) -> list[dict[str, Any]]:
    """Rows of a frame as dicts (JSON-safe, as `clean` makes them); the `keys` columns move into a `group`
    dict."""
    # NaN and ±inf become null in polars, column by column; only nested values still go through `clean`
    # (value by value, it cost a millisecond on a 200-row replay).
    floats = [c for c, t in frame.schema.items() if t.is_float()]
    frame = frame.with_columns(pl.when(pl.col(c).is_finite()).then(pl.col(c)).alias(c) for c in floats)
    nested = [c for c, t in frame.schema.items() if t.is_nested()]
    out = []
    for row in frame.iter_rows(named=True):
        for c in nested:
            row[c] = clean(row[c])
        group = {k: row.pop(k) for k in keys}
        if keys:
            row["group"] = group
        out.append(row)
    return out


def dump(obj: Any, exclude: Sequence[str] = ()) -> Any:
    """A frozen dataclass (nested ones too) as JSON-safe dicts, leaving out `exclude` fields at any depth."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {
            f.name: dump(getattr(obj, f.name), exclude)
            for f in dataclasses.fields(obj)
            if f.name not in exclude
        }
    return clean(obj)


def _public_type(tp: Any, exclude: Sequence[str]) -> Any:
    """The response-model type of a dataclass field type (nested dataclasses become models)."""
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        return public_model(tp, exclude=exclude)
    args = typing.get_args(tp)
    if isinstance(tp, types.UnionType) or typing.get_origin(tp) is typing.Union:
        return typing.Union[tuple(_public_type(a, exclude) for a in args)]  # noqa: UP007
    if typing.get_origin(tp) is tuple:
        if args and dataclasses.is_dataclass(args[0]) and isinstance(args[0], type):
            return types.GenericAlias(list, (public_model(args[0], exclude=exclude),))
        return list[float | None] if args and args[0] is float else list[Any]
    if tp is float:
        return float | None  # NaN (undefined) travels as null
    return tp


_MODELS: dict[tuple[type, tuple[str, ...]], type[BaseModel]] = {}


def public_model(cls: type, *, exclude: Sequence[str] = (), name: str | None = None) -> type[BaseModel]:
    """A response model with a frozen dataclass's fields (a new field shows up in the API by itself)."""
    key = (cls, tuple(exclude))
    if key in _MODELS:
        return _MODELS[key]
    hints = typing.get_type_hints(cls)
    fields: dict[str, Any] = {
        f.name: (_public_type(hints[f.name], exclude), ...)
        for f in dataclasses.fields(cls)
        if f.name not in exclude
    }
    model = create_model(name or f"{cls.__name__}Public", __doc__=cls.__doc__, **fields)
    _MODELS[key] = model
    return model


def table_model(table: str, name: str, doc: str, *, exclude: Sequence[str] = ()) -> Any:
    """A response model with a warehouse table's columns, typed and described from the models (a new
    column shows up in the API by itself)."""
    fields: dict[str, Any] = {
        c.name: (python_type(c), Field(description=c.doc)) for c in columns(table) if c.name not in exclude
    }
    return create_model(name, __doc__=doc, **fields)


def frame_model(name: str, doc: str, schema: FrameSchema, *, group: bool = True, **extra: Any) -> Any:
    """A response model for rows of an analytics frame: its `group` dict (when grouped), the frame's declared
    columns, typed and described by analytics, then `extra` fields (as `create_model` takes them)."""
    fields: dict[str, Any] = {"group": (Group, ...)} if group else {}
    for column, col in schema:
        tp: Any = col.type | None if col.type is float or col.nullable else col.type
        fields[column] = (tp, Field(description=col.doc))
    return create_model(name, __doc__=doc, **fields, **extra)


def grouped_answer(name: str, doc: str, **rows: Any) -> Any:
    """The response model of an aggregate answer: the `group_by` it was asked with, then each named list of
    row models."""
    lists: dict[str, Any] = {key: (list_of(model), ...) for key, model in rows.items()}
    return create_model(name, __doc__=doc, group_by=(list[str], ...), **lists)


def list_of(model: Any) -> Any:
    """`list[model]` for a model built at run time."""
    return types.GenericAlias(list, (model,))
