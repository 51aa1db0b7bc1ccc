"""GET /v1/runs and /v1/runs/{run_id}: runs with their CoF, filtered and paginated."""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Path
from pydantic import BaseModel, Field

from analytics.source import experiments
from api.convert import UtcDatetime
from api.db import select
from api.deps import (
    AnalystDep,
    CursorDep,
    DbDep,
    Keyset,
    Limit,
    LiveDep,
    PageCursor,
    SettingsDep,
    TimeoutMs,
)
from api.errors import ApiError, error_responses
from api.freshness import LiveStatuses
from api.params import Method, RouterName, Status
from api.settings import ApiSettings
from warehouse.liveness import displayed_status

router = APIRouter(prefix="/v1", tags=["runs"])


class RunPublic(BaseModel):
    """One run: its configuration, its status and its collaboration figures so far."""

    run_id: int
    created_at: UtcDatetime
    finished_at: UtcDatetime | None
    llm: str
    slm: str
    slm_tuned: str | None
    method: str
    router: str
    threshold: float | None
    dataset: str
    status: str = Field(
        description="running, complete, failed, or stale (running, but its collector is gone)"
    )
    error: str | None = Field(description="why a run failed or lost samples (null when it did not)")
    run_key: str = Field(description="the run's key (staging folder; `--resume` accepts it)")
    settings: dict[str, Any] = Field(description="every setting the run was collected with (RunConfig)")
    experiment: str = Field(description="the named set of runs it belongs to")
    identity: str | None = Field(
        description="hash of the settings that define the run: runs pool only when equal in it"
    )
    setup: str | None = Field(description="the identity without the pair's models (one scaling fit)")
    tags: list[str] = Field(description="tags given with `python -m warehouse runs tag` (read-only here)")
    excluded: bool = Field(description="out of every analysis (`python -m warehouse runs exclude`)")
    n_samples: int
    seed: int
    temperature: float
    top_p: float
    device: str
    dtype: str
    wall_s: float | None
    tokens_per_s: float | None
    tokens: int = Field(description="generated tokens ingested so far")
    consulted: int
    mismatches: int
    cof: float | None
    consult_rate: float | None
    accuracy: float | None


class RunsPublic(BaseModel):
    """A page of runs; `next_cursor` fetches the next one."""

    data: list[RunPublic]
    next_cursor: str | None
    truncated: bool = Field(description="true when more rows follow (the page hit its limit)")


# The columns come from the response model: r.* for the run's own, c.* / a.* for the views' figures.
_FROM_VIEWS = {"tokens": "c", "consulted": "c", "mismatches": "c", "cof": "c", "consult_rate": "c"}
RUN_COLUMNS = ", ".join(
    "a.accuracy" if name == "accuracy" else f"{_FROM_VIEWS.get(name, 'r')}.{name}"
    for name in RunPublic.model_fields
)
RUN_FROM = "runs r JOIN run_cof c USING (run_id) LEFT JOIN run_accuracy a USING (run_id)"
RUN_PAGES = Keyset(("after",), ("r.run_id",))


RunId = Annotated[int, Path(ge=0, le=2**62, description="a run_id from /v1/runs")]


def stored_run(row: dict[str, Any]) -> RunPublic:
    """A runs row with its status as stored (a function of the data alone: cached)."""
    parsed = {"settings": json.loads(row["settings"] or "{}"), "tags": json.loads(row["tags"] or "[]")}
    return RunPublic.model_validate({**row, **parsed})


def shown_run(run: RunPublic, settings: ApiSettings, live: LiveStatuses) -> RunPublic:
    """A run as the API shows it: a `running` run whose collector is gone says `stale` (the server's
    liveness snapshot, else read now)."""
    if run.status != "running":
        return run
    snapshot = live.snapshot()
    status = snapshot[0].get(run.run_id) if snapshot is not None else None
    if status is None:  # registered since the snapshot
        status = displayed_status(settings.warehouse, run.run_key, run.status, run.run_id)
    return run.model_copy(update={"status": status})


def require_run(cur: CursorDep, run_id: int, limit_ms: int) -> None:
    """404 unless the run exists."""
    if not select(cur, "SELECT 1 FROM runs WHERE run_id = ?", [run_id], limit_ms):
        raise ApiError(404, "not_found", f"run {run_id} does not exist; list runs at /v1/runs")


@router.get("/runs", response_model=RunsPublic, responses=error_responses(400, 401, 405, 500, 503))
def list_runs(
    analyst: AnalystDep,
    db: DbDep,
    settings: SettingsDep,
    live: LiveDep,
    llm: str | None = None,
    slm: str | None = None,
    method: Method | None = None,
    router: RouterName | None = None,
    dataset: str | None = None,
    status: Status | None = None,
    experiment: str | None = None,
    limit: Limit = 100,
    cursor: PageCursor = None,
    timeout_ms: TimeoutMs = None,
) -> RunsPublic:
    """Runs in id order; `next_cursor` fetches the next page; `limit` is capped by the server."""
    after, params = RUN_PAGES.after(cursor)
    where = [after]
    given = {"llm": llm, "slm": slm, "method": method, "router": router, "dataset": dataset, "status": status,
             "experiment": experiment}  # fmt: skip
    # `stale` is not stored: it is a running run whose collector is gone (checked per row below).
    stale_only = status == "stale"
    if stale_only:
        given["status"] = "running"
    for name, value in given.items():
        if value is not None:
            where.append(f"r.{name} = ?")
            params.append(value)
    page = min(limit, settings.max_rows)
    # The rows are a function of the data (cached until the ingester writes); the status is read per request.
    rows = analyst.rows(
        f"SELECT {RUN_COLUMNS} FROM {RUN_FROM} WHERE {' AND '.join(where)} ORDER BY {RUN_PAGES.order_by} "
        "LIMIT ?",
        [*params, page + 1],
        db.limit_ms(timeout_ms),
        stored_run,
    )
    shown = RUN_PAGES.page(rows, page, lambda r: (r.run_id,))
    data = [shown_run(r, settings, live) for r in shown.rows]
    if stale_only:
        data = [r for r in data if r.status == "stale"]
    return RunsPublic(data=data, next_cursor=shown.next_cursor, truncated=shown.truncated)


@router.get(
    "/runs/{run_id}", response_model=RunPublic, responses=error_responses(400, 401, 404, 405, 500, 503)
)
def get_run(
    run_id: RunId,
    analyst: AnalystDep,
    db: DbDep,
    settings: SettingsDep,
    live: LiveDep,
    timeout_ms: TimeoutMs = None,
) -> RunPublic:
    """One run with its CoF, consult rate and accuracy."""
    rows = analyst.rows(
        f"SELECT {RUN_COLUMNS} FROM {RUN_FROM} WHERE r.run_id = ?",
        [run_id],
        db.limit_ms(timeout_ms),
        stored_run,
    )
    if not rows:
        raise ApiError(404, "not_found", f"run {run_id} does not exist; list runs at /v1/runs")
    return shown_run(rows[0], settings, live)


class ExperimentPublic(BaseModel):
    """A named set of runs."""

    experiment: str
    runs: int = Field(description="runs in the analyses")
    excluded: int = Field(description="runs kept but excluded from every analysis")
    latest: UtcDatetime = Field(description="when its newest run started")
    is_default: bool = Field(description="the experiment the analyses read when none is named")


class ExperimentsPublic(BaseModel):
    """Every experiment, the most recent first."""

    data: list[ExperimentPublic]


@router.get(
    "/experiments", response_model=ExperimentsPublic, responses=error_responses(400, 401, 405, 500, 503)
)
def list_experiments(analyst: AnalystDep, db: DbDep, timeout_ms: TimeoutMs = None) -> ExperimentsPublic:
    """The experiments of the warehouse (`--experiment`, a sweep's name) with their runs."""
    frame = analyst(db.limit_ms(timeout_ms), experiments)
    return ExperimentsPublic(data=[ExperimentPublic(**r) for r in frame.to_dicts()])
