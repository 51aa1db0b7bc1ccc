"""Query parameters the aggregate routes share: filters on runs and the group-by guard."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Literal, get_args

from fastapi import Depends, Query

from warehouse import vocabulary

if TYPE_CHECKING:
    Method = str
    RouterName = str
    Status = str
else:  # the names of warehouse.vocabulary (stale: running, but its collector is gone)
    Method = Literal[vocabulary.methods()]
    RouterName = Literal[vocabulary.routers()]
    Status = Literal[vocabulary.STATUSES]
# Runs columns a client may group by: each has few distinct values (a guard against unbounded groups).
GroupColumn = Literal[
    "run_id", "llm", "slm", "slm_tuned", "method", "router", "threshold", "dataset", "status", "temperature",
    "top_p", "device", "dtype", "experiment", "identity", "setup",
]  # fmt: skip
ExperimentQuery = Annotated[
    str | None, Query(min_length=1, description="the experiment to read (default: the most recent)")
]
GROUP_COLUMNS: tuple[str, ...] = get_args(GroupColumn)


async def run_filters(
    run_id: Annotated[list[int] | None, Query(description="only these runs (repeatable)")] = None,
    llm: Annotated[str | None, Query(description="only runs with this LLM")] = None,
    slm: Annotated[str | None, Query(description="only runs with this SLM")] = None,
    method: Annotated[Method | None, Query(description="only runs of this method")] = None,
    router: Annotated[RouterName | None, Query(description="only runs with this router")] = None,
    dataset: Annotated[str | None, Query(description="only runs on this dataset")] = None,
    status: Annotated[Status | None, Query(description="only runs with this status")] = None,
    experiment: ExperimentQuery = None,
    baselines: Annotated[
        bool, Query(description="also the models alone (LLM = SLM, or router never), left out by default")
    ] = False,
) -> dict[str, Any]:
    """The filters given, as the `filters` mapping analytics takes (a list means IN); the experiment and
    the baselines set the scope (analytics.source)."""
    given: dict[str, Any] = {
        "run_id": run_id,
        "llm": llm,
        "slm": slm,
        "method": method,
        "router": router,
        "dataset": dataset,
        "status": status,
    }
    scope: dict[str, Any] = {"experiment": experiment} if experiment is not None else {}
    if baselines:
        scope["baseline"] = None
    return {**{k: v for k, v in given.items() if v is not None}, **scope}


GroupByQuery = Annotated[
    list[GroupColumn] | None,
    Query(
        description="runs columns to group by (repeatable; each once)",
        json_schema_extra={"uniqueItems": True},
    ),
]


def groups(given: list[GroupColumn] | None, default: tuple[str, ...]) -> tuple[str, ...]:
    """The group-by columns asked for, or the route's default (analytics refuses a repeated column)."""
    return tuple(given) if given else default


FiltersDep = Annotated[dict[str, Any], Depends(run_filters)]
Confidence = Annotated[float, Query(gt=0, lt=1, description="confidence level of intervals")]
Filters = dict[str, Any]
