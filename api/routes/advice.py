"""GET /v1/speculative/advice: the speculative advisor's ranking (draft model, K, stop rule per LLM)."""

from __future__ import annotations

from typing import Any

from pydantic import create_model

from analytics.advise import BEST, SAMPLING, Advice, advise
from api.convert import frame_model, list_of
from api.deps import AnalystDep, DbDep, TimeoutMs
from api.errors import error_responses
from api.formats import aggregate_router
from api.params import ExperimentQuery

router = aggregate_router(prefix="/v1", tags=["speculative"])


AdviceRow: Any = frame_model(
    "AdviceRow", "The best setting for one LLM and dataset, beside its runner-up.", BEST, group=False
)
SamplingRow: Any = frame_model(
    "SamplingRow", "The best K for one pair under speculative sampling.", SAMPLING, group=False
)
AdvicePublic: Any = create_model(
    "AdvicePublic",
    __doc__="The advisor's best settings (greedy, batch 1) and the best K under sampling.",
    best=(list_of(AdviceRow), ...),
    sampling=(list_of(SamplingRow), ...),
)


@router.get(
    "/speculative/advice", response_model=AdvicePublic, responses=error_responses(400, 401, 405, 500, 503)
)
def get_speculative_advice(
    analyst: AnalystDep, db: DbDep, experiment: ExperimentQuery = None, timeout_ms: TimeoutMs = None
) -> Any:
    """Best draft model, K and stop rule per LLM and dataset (greedy, batch 1), with the runner-up, predicted
    from oracle traces and the costs each run recorded; and the best K under speculative sampling."""
    advice: Advice = analyst(db.limit_ms(timeout_ms), advise, "oracle", experiment)
    return AdvicePublic(
        best=[AdviceRow(**r) for r in advice.best.drop("rank").to_dicts()],
        sampling=[SamplingRow(**r) for r in advice.sampling.to_dicts()],
    )
