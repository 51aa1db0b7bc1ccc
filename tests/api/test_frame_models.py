"""The aggregate routes' row models are the analytics frames' declared columns: a frame returns exactly
its schema's columns (after the group-by ones), of the declared kinds, and the route's model lists them."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from analytics.advise import BEST, SAMPLING, advise
from analytics.frames import FrameSchema
from analytics.frequency import OUTPUT, collaboration_frequency
from analytics.positions import DECILES, EARLY, early_share, position_profile
from analytics.served import SERVED, SERVED_POSITIONS, served_by_position, served_summary
from analytics.speculative import ACCEPTANCE, RUN, acceptance_by_position, speculative_runs
from analytics.uncertainty import ENTROPY_BINS, PREDICTOR_STATS, mismatch_by_entropy_bin, mismatch_predictors
from api.routes.advice import AdviceRow, SamplingRow
from api.routes.cof import CofRow
from api.routes.positions import DecileRow, EarlyRow
from api.routes.speculative import AcceptanceRow, ServedAcceptanceRow, ServedRow, SpeculativeRunRow
from api.routes.uncertainty import EntropyBinRow, PredictorRow

GROUP = ("llm", "method")
# name: (the frame of the warehouse, its group-by columns, the declared schema, the route's row model)
CASES: dict[str, tuple[Callable[[Path], pl.DataFrame], tuple[str, ...], FrameSchema, Any]] = {
    "cof": (lambda p: collaboration_frequency(p, GROUP), GROUP, OUTPUT, CofRow),
    "deciles": (lambda p: position_profile(p, GROUP), GROUP, DECILES, DecileRow),
    "early": (lambda p: early_share(p, GROUP), GROUP, EARLY, EarlyRow),
    "served": (served_summary, (), SERVED, ServedRow),
    "served positions": (served_by_position, (), SERVED_POSITIONS, ServedAcceptanceRow),
    "speculative runs": (speculative_runs, (), RUN, SpeculativeRunRow),
    "acceptance": (lambda p: acceptance_by_position(p, GROUP), GROUP, ACCEPTANCE, AcceptanceRow),
    "predictors": (lambda p: mismatch_predictors(p, GROUP), GROUP, PREDICTOR_STATS, PredictorRow),
    "entropy bins": (lambda p: mismatch_by_entropy_bin(p, GROUP), GROUP, ENTROPY_BINS, EntropyBinRow),
    "advice": (lambda p: advise(p).best.drop("rank"), (), BEST, AdviceRow),
    "sampling advice": (lambda p: advise(p).sampling, (), SAMPLING, SamplingRow),
}


def _kind(dtype: pl.DataType) -> str:
    return "int" if dtype.is_integer() else "float" if dtype.is_float() else str(dtype.base_type())


@pytest.mark.parametrize("name", list(CASES))
def test_frame_and_model_follow_the_declared_schema(synthetic_warehouse: Path, name: str) -> None:
    function, keys, schema, model = CASES[name]
    frame = function(synthetic_warehouse)
    assert frame.columns == [*keys, *schema.names]
    for column, col in schema:
        assert _kind(frame.schema[column]) == _kind(col.dtype), column
    fields = list(model.model_fields)
    grouped = ["group"] if keys else []
    assert fields[: len(grouped) + len(schema.names)] == [*grouped, *schema.names]
    described = {n: c.doc for n, c in schema if c.doc}
    assert {n: model.model_fields[n].description for n in described} == described
