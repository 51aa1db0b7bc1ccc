"""GET /v1/cof: collaboration frequency by any low-cardinality grouping of runs (analytics.frequency)."""

from __future__ import annotations

import duckdb
import polars as pl
from pydantic import BaseModel, Field

from analytics.frequency import MEAN_INTERVAL, POOLED_INTERVAL, collaboration_frequency
from analytics.source import setting_labels
from api.convert import Group, records
from api.deps import AnalystDep, DbDep, TimeoutMs
from api.errors import error_responses
from api.formats import aggregate_router
from api.params import Confidence, Filters, FiltersDep, GroupByQuery, groups

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
    settings: str | None = Field(
        default=None,
        description="grouped by identity: the settings that tell its runs from the others' (name=value)",
    )


class CofPublic(BaseModel):
    """CoF per group."""

    group_by: list[str]
    confidence: float
    data: list[CofRow]


# Runs differing in a setting that defines a run never pool unless asked (identity).
DEFAULT_GROUP_BY = ("llm", "slm", "method", "identity")


def _cof(
    cur: duckdb.DuckDBPyConnection, cols: tuple[str, ...], filters: Filters, confidence: float
) -> pl.DataFrame:
    """CoF per group; grouped by identity, with each identity's telling settings."""
    frame = collaboration_frequency(cur, cols, filters=filters, confidence=confidence)
    if "identity" not in cols:
        return frame
    return frame.join(setting_labels(cur, "identity", filters), on="identity", how="left")


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
    frame = analyst(db.limit_ms(timeout_ms), _cof, cols, filters, confidence)
    rows = [CofRow(**r) for r in records(frame, cols)]
    return CofPublic(group_by=list(cols), confidence=confidence, data=rows)
