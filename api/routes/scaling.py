"""GET /v1/scaling and /v1/scaling/predict: the scaling law of CoF in the parameter ratio (analytics.scaling).

The fit models are built from the analytics dataclasses' own fields, so a field added there shows up here.
"""

from __future__ import annotations

import types
from typing import Annotated, Any, Literal

import duckdb
import polars as pl
from fastapi import Query
from pydantic import BaseModel, Field, create_model

from analytics.pairs import pairs_in_scope
from analytics.scaling import (
    GroupFit,
    LawPrediction,
    ScalingFit,
    fit_groups,
    predict_cof,
)
from analytics.source import labels_by_key, scoped
from api.convert import clean, dump, public_model
from api.deps import AnalystDep, DbDep, TimeoutMs
from api.errors import ApiError, error_responses
from api.formats import aggregate_router
from api.params import Confidence, ExperimentQuery, Method, RouterName

router = aggregate_router(prefix="/v1", tags=["scaling"])
# bootstrap draws and residuals stay on the server (intervals travel); `loo` travels as leave_one_out
EXCLUDE = ("draws", "residuals", "loo")


class PairPointPublic(BaseModel):
    """One (LLM, SLM) pair of a method and dataset: its pooled CoF and parameter ratio."""

    experiment: str
    setup: str | None = Field(description="the settings beyond the pair (one fit per setup)")
    identity: str | None = Field(description="the settings that define the runs pooled here")
    llm: str
    slm: str
    llm_params: int
    slm_params: int
    param_ratio: float
    method: str
    router: str
    dataset: str
    settings: str | None = Field(description="the settings that tell this setup from the others, as text")
    runs: int
    tokens: int
    mismatches: int
    cof: float | None


class LeaveOneOutPointPublic(BaseModel):
    ratio: float
    cof: float
    predicted: float | None
    error: float | None


class LeaveOneOutPublic(BaseModel):
    """Fit without each pair in turn and predict it: the error on an unseen pair."""

    rmse: float | None
    mae: float | None
    points: list[LeaveOneOutPointPublic]


ScalingFitPublic = public_model(ScalingFit, exclude=EXCLUDE)
GroupFitPublic: Any = create_model(
    "GroupFitPublic",
    __base__=public_model(GroupFit, exclude=EXCLUDE, name="GroupFitFields"),
    leave_one_out=(LeaveOneOutPublic | None, Field(description="null where too few pairs to leave one out")),
    settings=(str | None, Field(description="the settings that tell this fit's setup from the others")),
)


def _list_of(model: Any) -> Any:
    """`list[model]` for a model built at run time."""
    return types.GenericAlias(list, (model,))


ScalingPublic: Any = create_model(
    "ScalingPublic",
    __doc__="Fits of CoF = γ·R^(−α) + β per (method, dataset), with the pairs they were fitted to.",
    method=(str | None, ...),
    dataset=(str | None, ...),
    router=(str | None, ...),
    bootstrap=(int, ...),
    points=(list[PairPointPublic], ...),
    fits=(_list_of(GroupFitPublic), ...),
)


LawPredictionFields = public_model(LawPrediction, name="LawPredictionFields")
PredictionPublic: Any = create_model(
    "PredictionPublic",
    __doc__="CoF of an unseen pair from the law the pairs support (or the paper's law with law=paper), with "
    "its prediction interval, whether the law is identified and whether the pair lies outside the measured "
    "sizes or ratios (`extrapolated`).",
    __base__=LawPredictionFields,
    method=(str, ...),
    dataset=(str, ...),
    router=(str | None, ...),
    ratio=(float, ...),
    llm_params=(int | None, ...),
    slm_params=(int | None, ...),
)
LawName = Annotated[
    Literal["chosen", "paper"],
    Query(
        description="chosen: the law the pairs support (default); paper: γ·R^(−α) + β, said when unidentified"
    ),
]
Bootstrap = Annotated[int, Query(ge=0, le=1000, description="bootstrap resamples for intervals (0: none)")]
Seed = Annotated[int, Query(ge=0, le=2**32 - 1, description="seed of the bootstrap")]
Router = Annotated[RouterName | None, Query(description="pairs of runs with this router (default always)")]


def _leave_one_out(fit: GroupFit) -> dict[str, Any] | None:
    loo = fit.loo
    if loo is None:
        return None
    names, columns = list(loo.columns), [c.tolist() for c in loo.columns.values()]
    points = [dict(zip(names, row, strict=True)) for row in zip(*columns, strict=True)]
    return {"rmse": loo.rmse, "mae": loo.mae, "points": clean(points)}


def _fits(cur: duckdb.DuckDBPyConnection, method: str | None, dataset: str | None, router: str | None,
          bootstrap: int, seed: int, experiment: str | None,
          ) -> tuple[pl.DataFrame, list[dict[str, Any]]]:  # fmt: skip
    given = {k: v for k, v in (("method", method), ("dataset", dataset), ("router", router)) if v is not None}
    scope = pairs_in_scope(cur, {**scoped(None, experiment), **given})  # the pairs and their runs: one query
    label = labels_by_key((setup, settings) for setup, _, settings in scope.labelled)
    # a left join on setup: a null setup matches no label
    setups = scope.points["setup"].to_list()
    points = scope.points.hstack(
        [pl.Series("settings", [None if s is None else label.get(s) for s in setups], dtype=pl.Utf8)]
    )
    fits = fit_groups(points, bootstrap=bootstrap, seed=seed)
    return points, [
        {**dump(g, EXCLUDE), "leave_one_out": _leave_one_out(g), "settings": label.get(g.setup)} for g in fits
    ]


@router.get("/scaling", response_model=ScalingPublic, responses=error_responses(400, 401, 405, 500, 503))
def get_scaling(
    analyst: AnalystDep,
    db: DbDep,
    method: Method | None = None,
    dataset: str | None = None,
    router: Router = "always",
    bootstrap: Bootstrap = 0,
    seed: Seed = 0,
    experiment: ExperimentQuery = None,
    timeout_ms: TimeoutMs = None,
) -> Any:
    """The fit per (method, dataset, setup) with bootstrap intervals and leave-one-pair-out error."""
    points, fits = analyst(
        db.limit_ms(timeout_ms), _fits, method, dataset, router, bootstrap, seed, experiment
    )
    return {
        "method": method,
        "dataset": dataset,
        "router": router,
        "bootstrap": bootstrap,
        "points": clean(points.to_dicts()),  # as `records` makes them, without its frame operation
        "fits": fits,
    }


def _ratio(ratio: float | None, llm_params: int | None, slm_params: int | None) -> float:
    sizes = (llm_params, slm_params)
    if ratio is not None and any(s is not None for s in sizes):
        raise ApiError(
            400, "conflicting_parameters", "give either ratio or llm_params with slm_params, not both"
        )
    if ratio is not None:
        return ratio
    if llm_params is None or slm_params is None:
        raise ApiError(400, "missing_parameter", "give ratio, or both llm_params and slm_params")
    return llm_params / slm_params


@router.get(
    "/scaling/predict",
    response_model=PredictionPublic,
    responses=error_responses(400, 401, 404, 405, 500, 503),
)
def predict_scaling(
    analyst: AnalystDep,
    db: DbDep,
    method: Method,
    dataset: Annotated[str, Query(min_length=1)],
    router: Router = "always",
    ratio: Annotated[float | None, Query(gt=0, le=1e12, description="N_LLM / N_SLM")] = None,
    llm_params: Annotated[int | None, Query(ge=1, le=10**15)] = None,
    slm_params: Annotated[int | None, Query(ge=1, le=10**15)] = None,
    bootstrap: Annotated[int, Query(ge=1, le=1000, description="bootstrap resamples")] = 200,
    seed: Seed = 0,
    confidence: Confidence = 0.95,
    law: LawName = "chosen",
    experiment: ExperimentQuery = None,
    setup: Annotated[
        str | None,
        Query(max_length=64, description="the pairs of one setup (a `setup` of /v1/scaling's points)"),
    ] = None,
    timeout_ms: TimeoutMs = None,
) -> Any:
    """CoF of an unseen pair (by its ratio or its two sizes) from the chosen law, with its interval."""
    r = _ratio(ratio, llm_params, slm_params)
    sizes = (llm_params, slm_params) if llm_params is not None and slm_params is not None else None
    pred = analyst(
        db.limit_ms(timeout_ms), predict_cof, method=method, dataset=dataset, router=router, ratio=r,
        sizes=sizes, law=law, bootstrap=bootstrap, seed=seed, confidence=confidence,
        filters=scoped(None if setup is None else {"setup": setup}, experiment),
    )  # fmt: skip
    return {
        **dump(pred),
        "method": method,
        "dataset": dataset,
        "router": router,
        "ratio": r,
        "llm_params": llm_params,
        "slm_params": slm_params,
    }
