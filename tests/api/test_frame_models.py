"""The aggregate routes' row models are the analytics frames' declared columns: a frame returns exactly
its schema's columns (after the group-by ones), of the declared kinds, and the route's model lists them."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from analytics.frames import FrameSchema
from analytics.frequency import OUTPUT, collaboration_frequency
from analytics.positions import DECILES, EARLY, early_share, position_profile
from api.routes.cof import CofRow
from api.routes.positions import DecileRow, EarlyRow
from tests.synthetic import compared_runs

CASES: dict[str, tuple[Callable[..., pl.DataFrame], FrameSchema, Any]] = {
    "cof": (collaboration_frequency, OUTPUT, CofRow),
    "deciles": (position_profile, DECILES, DecileRow),
    "early": (early_share, EARLY, EarlyRow),
}


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("frames") / "fsgen.duckdb"
    compared_runs(path)
    return path


def _kind(dtype: pl.DataType) -> str:
    return "int" if dtype.is_integer() else "float" if dtype.is_float() else str(dtype.base_type())


@pytest.mark.parametrize("name", list(CASES))
def test_frame_and_model_follow_the_declared_schema(warehouse: Path, name: str) -> None:
    function, schema, model = CASES[name]
    frame = function(warehouse, ("llm", "method"))
    assert frame.columns == ["llm", "method", *schema.names]
    for column, col in schema:
        assert _kind(frame.schema[column]) == _kind(col.dtype), column
    fields = list(model.model_fields)
    assert fields[: 1 + len(schema.names)] == ["group", *schema.names]
    described = {n: c.doc for n, c in schema if c.doc}
    assert {n: model.model_fields[n].description for n in described} == described
