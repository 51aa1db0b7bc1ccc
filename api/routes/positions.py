"""GET /v1/positions: where interventions fall in a generation (analytics.positions)."""

from __future__ import annotations

from typing import Annotated

import duckdb
import polars as pl
from fastapi import Query
from pydantic import BaseModel, Field

from analytics.positions import Alternative, early_share, position_profile
from api.convert import Group, records
from api.deps import AnalystDep, DbDep, TimeoutMs
from api.errors import error_responses
from api.formats import aggregate_router
from api.params import Filters, FiltersDep, GroupByQuery, groups

router = aggregate_router(prefix="/v1", tags=["positions"])


class DecileRow(BaseModel):
    """One relative-position decile of a group."""

    group: Group
    bin: int = Field(description="decile 0..9 of the relative position in the sample")
    tokens: int
    mismatches: int
    mismatch_rate: float | None
    mismatch_share: float | None = Field(description="share of the group's mismatches in this decile")
    token_share: float | None = Field(description="share of the group's tokens (the uniform baseline)")


class EarlyRow(BaseModel):
    """Share of a group's mismatches in the early window against its share of tokens, tested clustered by
    sample, and again without the steps the prompt format fixes."""

    group: Group
    window: str
    test: str = Field(description="what p_value tests, and how")
    samples: int
    tokens: int
    mismatches: int
    early_tokens: int
    early_mismatches: int
    mismatch_share: float | None
    baseline_share: float | None = Field(description="the window's share of tokens (uniform baseline)")
    enrichment: float | None = Field(description="mismatch_share / baseline_share")
    enrichment_lo: float | None = Field(description="95% interval of enrichment: bootstrap by sample")
    enrichment_hi: float | None
    p_value: float | None = Field(description="score test clustered by sample, t(samples − 1)")
    alternative: str
    fixed_steps: list[int] = Field(
        description="steps no sample mismatches at though the group's CoF makes that unlikely (p ≤ 0.01): "
        "fixed by the prompt format"
    )
    baseline_share_without_fixed: float | None = Field(description="as above, fixed steps left out")
    enrichment_without_fixed: float | None
    enrichment_without_fixed_lo: float | None
    enrichment_without_fixed_hi: float | None
    p_value_without_fixed: float | None


class PositionsPublic(BaseModel):
    """The decile profile and the early-window test per group."""

    group_by: list[str]
    deciles: list[DecileRow]
    early: list[EarlyRow]


DEFAULT_GROUP_BY = ("run_id",)


def _both(cur: duckdb.DuckDBPyConnection, group_by: tuple[str, ...], filters: Filters, k: int | None,
          fraction: float | None, alternative: Alternative) -> tuple[pl.DataFrame, pl.DataFrame]:  # fmt: skip
    deciles = position_profile(cur, group_by, filters=filters)
    early = early_share(cur, group_by, k=k, fraction=fraction, filters=filters, alternative=alternative)
    return deciles, early


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
) -> PositionsPublic:
    """Mismatch share by relative-position decile; the share in the first k tokens (or fraction), tested."""
    cols = groups(group_by, DEFAULT_GROUP_BY)
    deciles, early = analyst(db.limit_ms(timeout_ms), _both, cols, filters, k, fraction, alternative)
    return PositionsPublic(
        group_by=list(cols),
        deciles=[DecileRow(**r) for r in records(deciles, cols)],
        early=[EarlyRow(**r) for r in records(early, cols)],
    )
