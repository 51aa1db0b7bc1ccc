"""The declared output columns of an analytics frame: each column's Python type and meaning, written once
beside the function that computes it; the API derives its response models from them (`api.convert`)."""

from __future__ import annotations

import typing
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import polars as pl

POLARS_OF: dict[Any, pl.DataType] = {int: pl.Int64(), float: pl.Float64(), str: pl.Utf8(), bool: pl.Boolean()}


@dataclass(frozen=True)
class Col:
    """One output column: the Python type of its values and what it means. A float may be null (NaN and
    undefined values travel as null); another type only when `nullable`."""

    type: Any  # int, float, str, bool or list[int]
    doc: str | None = None
    nullable: bool = False

    @property
    def dtype(self) -> pl.DataType:
        """The polars dtype of the column."""
        if typing.get_origin(self.type) is list:
            return pl.List(POLARS_OF[typing.get_args(self.type)[0]])
        return POLARS_OF[self.type]


@dataclass(frozen=True)
class FrameSchema:
    """The columns a frame's function returns, in order (its group-by columns come before them)."""

    columns: tuple[tuple[str, Col], ...]

    @staticmethod
    def of(**columns: Col) -> FrameSchema:
        """A schema from keyword columns, in the order given."""
        return FrameSchema(tuple(columns.items()))

    @property
    def names(self) -> tuple[str, ...]:
        """The column names, in order."""
        return tuple(name for name, _ in self.columns)

    def plus(self, *others: FrameSchema) -> FrameSchema:
        """This schema's columns, then the others'."""
        return FrameSchema(self.columns + tuple(c for o in others for c in o.columns))

    def drop(self, *names: str) -> FrameSchema:
        """This schema less the named columns."""
        return FrameSchema(tuple((n, c) for n, c in self.columns if n not in names))

    def polars(self, *, leave_out: tuple[str, ...] = ()) -> dict[str, pl.DataType]:
        """The polars schema of the declared columns (less `leave_out`)."""
        return {name: col.dtype for name, col in self.columns if name not in leave_out}

    def __iter__(self) -> Iterator[tuple[str, Col]]:
        return iter(self.columns)

    def select(self, frame: pl.DataFrame, keys: tuple[str, ...] = ()) -> pl.DataFrame:
        """`frame` cut to the group-by `keys` and the declared columns, in order (a missing one raises)."""
        return frame.select(*keys, *self.names)
