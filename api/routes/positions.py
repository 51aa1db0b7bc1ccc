"""GET /v1/positions: where interventions fall in a generation (analytics.positions)."""

from __future__ import annotations

from typing import Annotated, Any

import duckdb
import polars as pl
from fastapi import Query

from analytics.positions import DECILES, EARLY, Alternative, positions
from api.convert import frame_model, grouped_answer, records
from api.deps import AnalystDep, DbDep, TimeoutMs
from api.errors import error_responses
from api.formats import aggregate_router
from api.params import Filters, FiltersDep, GroupByQuery, groups

router = aggregate_router(prefix="/v1", tags=["positions"])


DecileRow: Any = frame_model("DecileRow", "One relative-position decile of a group.", DECILES)
EarlyRow: Any = frame_model(
    "EarlyRow",
    "Share of a group's mismatches in the early window against its share of tokens, tested clustered by "
    "sample, and again without the steps the prompt format fixes.",
    EARLY,
)
PositionsPublic: Any = grouped_answer(
    "PositionsPublic",
    "The decile profile and the early-window test per group.",
    deciles=DecileRow,
    early=EarlyRow,
)


DEFAULT_GROUP_BY = ("run_id",)


def _both(cur: duckdb.DuckDBPyConnection, group_by: tuple[str, ...], filters: Filters, k: int | None,
          fraction: float | None, alternative: Alternative) -> tuple[pl.DataFrame, pl.DataFrame]:  # fmt: skip
    return positions(cur, group_by, k=k, fraction=fraction, filters=filters, alternative=alternative)


@router.get("/positions", response_model=PositionsPublic, responses=error_responses(400, 401, 405, 500, 503))
def get_positions(
    analyst: AnalystDep,
    db: DbDep,
    filters: FiltersDep,
    group_by: GroupByQuery = None,
    k: Annotated[
        int | None, Query(ge=1, le=1_000_000, description="early window: the first k tokens")
    ] = None,
    fraction: Annotated[
        float | None,
        Query(gt=0, lt=1, description="early window: the first fraction of each sample (default 0.1)"),
    ] = None,
    alternative: Annotated[
        Alternative, Query(description="of the early-share test; two-sided unless asked")
    ] = "two-sided",
    timeout_ms: TimeoutMs = None,
) -> Any:
    """Mismatch share by relative-position decile; the share in the first k tokens (or fraction), tested."""
    cols = groups(group_by, DEFAULT_GROUP_BY)
    deciles, early = analyst(db.limit_ms(timeout_ms), _both, cols, filters, k, fraction, alternative)
    return PositionsPublic(
        group_by=list(cols),
        deciles=[DecileRow(**r) for r in records(deciles, cols)],
        early=[EarlyRow(**r) for r in records(early, cols)],
    )
