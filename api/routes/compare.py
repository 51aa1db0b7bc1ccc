"""GET /v1/compare?a=&b=: two runs side by side (analytics.compare), with the difference's interval.

`?format=csv` answers the same as CSV (api.formats): a `part` column names the rows' list (runs, metrics,
first_differences); the settings that differ (a mapping, not rows) are in the JSON answer only."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Query
from pydantic import BaseModel, Field

from analytics.compare import Comparison, as_json, compare_runs
from api.convert import records
from api.deps import AnalystDep, DbDep, TimeoutMs
from api.errors import ApiError, error_responses
from api.formats import aggregate_router
from api.params import Confidence

router = aggregate_router(prefix="/v1", tags=["compare"])


class ComparedRun(BaseModel):
    """What one of the two runs is."""

    run_id: int
    experiment: str
    llm: str
    slm: str
    method: str
    router: str
    threshold: float | None
    dataset: str
    status: str
    tokens_per_s: float | None


class SettingPair(BaseModel):
    a: Any
    b: Any


class MetricRow(BaseModel):
    """One figure of both runs and the interval of B − A."""

    metric: str
    a: float | None
    b: float | None
    difference: float | None = Field(description="B − A")
    ci_lo: float | None
    ci_hi: float | None
    samples: int | None = Field(description="samples behind the interval (paired ones where paired)")
    interval: str = Field(description="how the interval was made: paired by prompt, Welch, or none")


class FirstDifference(BaseModel):
    """A pair of samples (same prompt) whose tokens part at `step`; `links` open both token views."""

    sample_a: int
    sample_b: int
    step: int
    token_a: int | None
    token_b: int | None
    links: list[str]


class ComparisonPublic(BaseModel):
    """Two runs compared."""

    runs: list[ComparedRun]
    settings: dict[str, SettingPair] = Field(description="recorded settings that differ")
    metrics: list[MetricRow]
    paired: int = Field(description="samples paired by prompt (0: the runs share no prompt)")
    confidence: float
    first_differences: list[FirstDifference]


def _run_id(row: dict[str, Any]) -> int:
    return int(row["run_id"])


RunParam = Annotated[int, Query(ge=0, le=2**62, description="a run_id from /v1/runs")]


@router.get(
    "/compare", response_model=ComparisonPublic, responses=error_responses(400, 401, 404, 405, 500, 503)
)
def get_compare(
    analyst: AnalystDep,
    db: DbDep,
    a: RunParam,
    b: RunParam,
    confidence: Confidence = 0.95,
    timeout_ms: TimeoutMs = None,
) -> ComparisonPublic:
    """CoF, accuracy, acceptance and speed of runs a and b, the interval of each difference (paired by
    sample where the runs share prompts), and the samples whose tokens first differ."""
    sql = "SELECT run_id FROM runs WHERE run_id IN (?, ?)"
    found = analyst.rows(sql, [a, b], db.limit_ms(timeout_ms), _run_id)
    missing = sorted({a, b} - set(found))
    if missing:
        raise ApiError(404, "not_found", f"run {missing[0]} does not exist; list runs at /v1/runs")
    c: Comparison = analyst(db.limit_ms(timeout_ms), compare_runs, a, b, confidence)
    body = as_json(c)
    body["metrics"] = records(c.metrics)
    body["first_differences"] = [
        {**d, "links": [f"/runs/{a}/samples/{d['sample_a']}", f"/runs/{b}/samples/{d['sample_b']}"]}
        for d in body["first_differences"]
    ]
    return ComparisonPublic.model_validate(body)
