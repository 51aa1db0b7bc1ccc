"""GET /v1/cof: collaboration frequency by any low-cardinality grouping of runs (analytics.frequency)."""

from __future__ import annotations

from pydantic import BaseModel, Field

from analytics.frequency import MEAN_INTERVAL, POOLED_INTERVAL, collaboration_frequency
from api.convert import Group, records
from api.deps import AnalystDep, DbDep, TimeoutMs
from api.errors import error_responses
from api.formats import aggregate_router
from api.params import Confidence, FiltersDep, GroupByQuery, groups

router = aggregate_router(prefix="/v1", tags=["cof"])


class CofRow(BaseModel):
    """CoF of one group: pooled with its own interval, and the mean over samples with its t interval."""

    group: Group
    samples: int
    tokens: int
    mismatches: int
    consulted: int
    cof: float | None = Field(description="pooled: mismatches / tokens")
    cof_lo: float | None = Field(description=f"{POOLED_INTERVAL}, at `confidence`")
    cof_hi: float | None
    design_effect: float | None = Field(
        description="variance of the pooled CoF over the variance it would have with independent tokens"
    )
    cof_mean: float | None = Field(description="mean of the per-sample CoF")
    cof_sd: float | None = Field(description="standard deviation of the per-sample CoF")
    cof_mean_lo: float | None = Field(description=f"{MEAN_INTERVAL}, at `confidence`")
    cof_mean_hi: float | None
    consult_rate: float | None


class CofPublic(BaseModel):
    """CoF per group."""

    group_by: list[str]
    confidence: float
    data: list[CofRow]


DEFAULT_GROUP_BY = ("llm", "slm", "method")


@router.get("/cof", response_model=CofPublic, responses=error_responses(400, 401, 405, 500, 503))
def get_cof(
    analyst: AnalystDep,
    db: DbDep,
    filters: FiltersDep,
    group_by: GroupByQuery = None,
    confidence: Confidence = 0.95,
    timeout_ms: TimeoutMs = None,
) -> CofPublic:
    """Pooled CoF = mismatches / tokens per group, and the per-sample mean with its interval."""
    cols = groups(group_by, DEFAULT_GROUP_BY)
    frame = analyst(
        db.limit_ms(timeout_ms),
        collaboration_frequency,
        cols,
        filters=filters,
        confidence=confidence,
    )
    rows = [CofRow(**r) for r in records(frame, cols)]
    return CofPublic(group_by=list(cols), confidence=confidence, data=rows)
