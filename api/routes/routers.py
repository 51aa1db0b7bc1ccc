"""GET /v1/routers/replay and /v1/routers/best: threshold routers replayed on a run (analytics.routers)."""

from __future__ import annotations

from typing import Annotated

import duckdb
import polars as pl
from fastapi import Query
from pydantic import BaseModel, Field

from analytics.routers import (
    DEFAULT_THRESHOLDS,
    ROUTERS,
    RouterKind,
    best_routers,
    replay,
    replay_all,
)
from api.convert import records
from api.deps import AnalystDep, DbDep, TimeoutMs
from api.errors import ApiError, error_responses
from api.formats import aggregate_router
from api.routes.runs import require_run

router = aggregate_router(prefix="/v1/routers", tags=["routers"])
ReplayRouter = RouterKind
RunIdQuery = Annotated[int, Query(ge=0, le=2**62, description="the recorded run to replay")]
Routers = Annotated[list[ReplayRouter] | None, Query(description="router kinds (repeatable; default all)")]
NThresholds = Annotated[
    int | None,
    Query(ge=1, le=1000, description=f"thresholds at token quantiles (default {DEFAULT_THRESHOLDS})"),
]
_ERRORS = error_responses(400, 401, 404, 405, 500, 503)


class ReplayRow(BaseModel):
    """One router at one threshold: what it would have consulted and caught."""

    router: str
    threshold: float
    tokens: int
    consulted: int
    mismatches: int
    caught_mismatches: int
    consult_rate: float | None
    caught: float | None = Field(
        description="share of the run's mismatches the router would have consulted on"
    )
    precision: float | None


class ReplayPublic(BaseModel):
    """The offline consult-rate vs mismatches-caught curve of each router on one run."""

    run_id: int
    exact: bool = Field(description="true on an `always` run, where replay is exact")
    data: list[ReplayRow]


class RouterChoicePublic(BaseModel):
    """The threshold that catches the most mismatches within the consult budget."""

    router: str
    threshold: float
    consult_rate: float | None
    caught: float | None
    precision: float | None
    budget: float


class BestPublic(BaseModel):
    """The best router and threshold for a budget, and the best of each kind."""

    run_id: int
    budget: float
    best: RouterChoicePublic | None = Field(description="null when no threshold fits the budget")
    per_router: list[RouterChoicePublic]


def _replayed(cur: duckdb.DuckDBPyConnection, run_id: int, routers: tuple[str, ...],
              thresholds: list[float] | None, n: int) -> pl.DataFrame:  # fmt: skip
    if thresholds is not None:
        return pl.concat([replay(cur, run_id, r, thresholds) for r in routers])
    return replay_all(cur, run_id, routers, n)


def _choose(routers: list[ReplayRouter] | None) -> tuple[str, ...]:
    return tuple(dict.fromkeys(routers)) if routers else tuple(ROUTERS)


@router.get("/replay", response_model=ReplayPublic, responses=_ERRORS)
def replay_routers(
    analyst: AnalystDep,
    db: DbDep,
    run_id: RunIdQuery,
    router: Routers = None,
    thresholds: Annotated[
        list[Annotated[float, Field(allow_inf_nan=False)]] | None,
        Query(max_length=1000, description="thresholds τ (repeatable); default: quantiles"),
    ] = None,
    n_thresholds: NThresholds = None,
    timeout_ms: TimeoutMs = None,
) -> ReplayPublic:
    """Per router and threshold: consult rate, share of mismatches caught, precision."""
    if thresholds and n_thresholds is not None:
        raise ApiError(400, "conflicting_parameters", "give either thresholds or n_thresholds, not both")
    limit_ms = db.limit_ms(timeout_ms)
    require_run(analyst.cur, run_id, limit_ms)
    n = n_thresholds or DEFAULT_THRESHOLDS
    frame = analyst(limit_ms, _replayed, run_id, _choose(router), thresholds or None, n)
    exact = bool(frame["exact"][0]) if frame.height else False
    rows = records(frame.drop("run_id", "exact"))
    return ReplayPublic(run_id=run_id, exact=exact, data=[ReplayRow(**r) for r in rows])


@router.get("/best", response_model=BestPublic, responses=_ERRORS)
def best_router(
    analyst: AnalystDep,
    db: DbDep,
    run_id: RunIdQuery,
    budget: Annotated[float, Query(ge=0, le=1, description="largest consult rate allowed")],
    router: Routers = None,
    n_thresholds: NThresholds = None,
    timeout_ms: TimeoutMs = None,
) -> BestPublic:
    """The router and threshold that catch the most mismatches with consult rate ≤ budget."""
    limit_ms = db.limit_ms(timeout_ms)
    require_run(analyst.cur, run_id, limit_ms)
    kinds = _choose(router)
    best, by_router = analyst(
        limit_ms, best_routers, run_id, kinds, n_thresholds or DEFAULT_THRESHOLDS, budget
    )
    per = [by_router.get(k) for k in kinds]

    def public(c: object) -> RouterChoicePublic:
        return RouterChoicePublic.model_validate(c, from_attributes=True)

    return BestPublic(
        run_id=run_id,
        budget=budget,
        best=public(best) if best else None,
        per_router=[public(c) for c in per if c is not None],
    )
