"""GET /v1/speculative/advice: the speculative advisor's ranking (draft model, K, stop rule per LLM)."""

from __future__ import annotations

from pydantic import BaseModel

from analytics.advise import Advice, advise
from api.deps import AnalystDep, DbDep, TimeoutMs
from api.errors import error_responses
from api.formats import aggregate_router
from api.params import ExperimentQuery

router = aggregate_router(prefix="/v1", tags=["speculative"])


class AdviceRow(BaseModel):
    llm: str
    dataset: str
    slm: str
    oracle_run_id: int
    draft_k: int
    draft_stop: str | None
    draft_threshold: float | None
    cycles: int
    tokens: int
    acceptance: float
    tokens_per_cycle: float
    predicted_tokens_per_s: float
    baseline_tokens_per_s: float
    predicted_speedup: float
    runner_up_slm: str | None = None
    runner_up_draft_k: int | None = None
    runner_up_draft_stop: str | None = None
    runner_up_draft_threshold: float | None = None
    runner_up_predicted_speedup: float | None = None


class SamplingRow(BaseModel):
    llm: str
    dataset: str
    slm: str
    oracle_run_id: int
    alpha: float
    draft_k: int
    tokens_per_cycle: float
    predicted_speedup: float


class AdvicePublic(BaseModel):
    best: list[AdviceRow]
    sampling: list[SamplingRow]


@router.get(
    "/speculative/advice", response_model=AdvicePublic, responses=error_responses(400, 401, 405, 500, 503)
)
def get_speculative_advice(
    analyst: AnalystDep, db: DbDep, experiment: ExperimentQuery = None, timeout_ms: TimeoutMs = None
) -> AdvicePublic:
    """Best draft model, K and stop rule per LLM and dataset (greedy, batch 1), with the runner-up, predicted
    from oracle traces and the costs each run recorded; and the best K under speculative sampling."""
    advice: Advice = analyst(db.limit_ms(timeout_ms), advise, "oracle", experiment)
    return AdvicePublic(
        best=[AdviceRow(**r) for r in advice.best.drop("rank").to_dicts()],
        sampling=[SamplingRow(**r) for r in advice.sampling.to_dicts()],
    )
