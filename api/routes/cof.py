"""GET /v1/cof: collaboration frequency by any low-cardinality grouping of runs (analytics.frequency)."""

from __future__ import annotations

from typing import Any

import duckdb
import polars as pl
from pydantic import Field, create_model

from analytics.frequency import OUTPUT, collaboration_frequency
from analytics.source import setting_labels
from api.convert import frame_model, list_of, records
from api.deps import AnalystDep, DbDep, TimeoutMs
from api.errors import error_responses
from api.formats import aggregate_router
from api.params import Confidence, Filters, FiltersDep, GroupByQuery, groups

router = aggregate_router(prefix="/v1", tags=["cof"])


CofRow: Any = frame_model(
    "CofRow",
    "CoF of one group: pooled with its own interval, and the mean over samples with its t interval.",
    OUTPUT,
    settings=(
        str | None,
        Field(
            default=None,
            description="grouped by identity: the settings that tell its runs from the others' (name=value)",
        ),
    ),
)


CofPublic: Any = create_model(
    "CofPublic",
    __doc__="CoF per group.",
    group_by=(list[str], ...),
    confidence=(float, ...),
    data=(list_of(CofRow), ...),
)


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
) -> Any:
    """Pooled CoF = mismatches / tokens per group, and the per-sample mean with its interval."""
    cols = groups(group_by, DEFAULT_GROUP_BY)
    frame = analyst(db.limit_ms(timeout_ms), _cof, cols, filters, confidence)
    rows = [CofRow(**r) for r in records(frame, cols)]
    return CofPublic(group_by=list(cols), confidence=confidence, data=rows)
