"""GET /v1/uncertainty: does System 1's uncertainty predict a mismatch? (analytics.uncertainty)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Literal

import duckdb
import polars as pl
from fastapi import Query

from analytics.uncertainty import (
    ENTROPY_BINS,
    PREDICTOR_STATS,
    PREDICTORS,
    uncertainty_tables,
)
from api.convert import frame_model, grouped_answer, records
from api.deps import AnalystDep, DbDep, TimeoutMs
from api.errors import error_responses
from api.formats import aggregate_router
from api.params import Filters, FiltersDep, GroupByQuery, groups

router = aggregate_router(prefix="/v1", tags=["uncertainty"])
if TYPE_CHECKING:
    Predictor = str
else:
    Predictor = Literal[tuple(PREDICTORS)]


PredictorRow: Any = frame_model(
    "PredictorRow",
    "How well one predictor (larger = less certain System 1) separates mismatches, in one group.",
    PREDICTOR_STATS,
)
EntropyBinRow: Any = frame_model(
    "EntropyBinRow", "Mismatch rate in one bin of System 1 entropy [lo, hi) nats.", ENTROPY_BINS
)
UncertaintyPublic: Any = grouped_answer(
    "UncertaintyPublic",
    "Per group: each predictor's AUROC and correlations, and the mismatch rate by entropy bin.",
    predictors=PredictorRow,
    entropy_bins=EntropyBinRow,
)


DEFAULT_GROUP_BY = ("run_id",)


def _both(cur: duckdb.DuckDBPyConnection, group_by: tuple[str, ...], filters: Filters,
          predictors: tuple[str, ...]) -> tuple[pl.DataFrame, pl.DataFrame]:  # fmt: skip
    return uncertainty_tables(cur, group_by, predictors=predictors, filters=filters)


@router.get(
    "/uncertainty", response_model=UncertaintyPublic, responses=error_responses(400, 401, 405, 500, 503)
)
def get_uncertainty(
    analyst: AnalystDep,
    db: DbDep,
    filters: FiltersDep,
    group_by: GroupByQuery = None,
    predictor: Annotated[
        list[Predictor] | None, Query(description="predictors (repeatable; default all)")
    ] = None,
    timeout_ms: TimeoutMs = None,
) -> Any:
    """AUROC, Spearman and point-biserial per predictor; mismatch rate by entropy bin."""
    cols = groups(group_by, DEFAULT_GROUP_BY)
    chosen = tuple(dict.fromkeys(predictor)) if predictor else tuple(PREDICTORS)
    stats, bins = analyst(db.limit_ms(timeout_ms), _both, cols, filters, chosen)
    return UncertaintyPublic(
        group_by=list(cols),
        predictors=[PredictorRow(**r) for r in records(stats, cols)],
        entropy_bins=[EntropyBinRow(**r) for r in records(bins, cols)],
    )
