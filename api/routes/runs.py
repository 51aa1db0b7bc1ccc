"""GET /v1/runs and /v1/runs/{run_id}: runs with their CoF, filtered and paginated."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel

from api.deps import DbDep, SettingsDep, TimeoutMs, decode_cursor, encode_cursor
from api.errors import ApiError
from api.settings import ApiSettings
from warehouse.liveness import displayed_status

router = APIRouter(prefix="/v1", tags=["runs"])

RUN_COLUMNS = (
    "r.run_id, r.created_at, r.finished_at, r.llm, r.slm, r.slm_tuned, r.method, r.router, r.threshold, "
    "r.dataset, r.status, r.n_samples, r.seed, r.temperature, r.top_p, r.device, r.dtype, r.wall_s, "
    "r.tokens_per_s, c.tokens, c.consulted, c.mismatches, c.cof, c.consult_rate, a.accuracy, r.run_key"
)
RUN_FROM = "runs r JOIN run_cof c USING (run_id) LEFT JOIN run_accuracy a USING (run_id)"
FILTERS = ("llm", "slm", "method", "router", "dataset", "status")


class RunPublic(BaseModel):
    run_id: int
    created_at: datetime
    finished_at: datetime | None
    llm: str
    slm: str
    slm_tuned: str | None
    method: str
    router: str
    threshold: float | None
    dataset: str
    status: str
    n_samples: int
    seed: int
    temperature: float
    top_p: float
    device: str
    dtype: str
    wall_s: float | None
    tokens_per_s: float | None
    tokens: int
    consulted: int
    mismatches: int
    cof: float | None
    consult_rate: float | None
    accuracy: float | None


def run_public(row: dict[str, Any], settings: ApiSettings) -> RunPublic:
    """A runs row as the API shows it: a `running` run whose collector is gone says `stale`."""
    status = displayed_status(settings.warehouse, row.pop("run_key"), row["status"], row["run_id"])
    return RunPublic(**{**row, "status": status})


class RunsPublic(BaseModel):
    data: list[RunPublic]
    next_cursor: str | None
    truncated: bool


@router.get("/runs", response_model=RunsPublic)
def list_runs(
    db: DbDep,
    settings: SettingsDep,
    llm: str | None = None,
    slm: str | None = None,
    method: str | None = None,
    router: str | None = None,
    dataset: str | None = None,
    status: str | None = None,
    limit: Annotated[int, Query(ge=1)] = 100,
    cursor: str | None = None,
    timeout_ms: TimeoutMs = None,
) -> RunsPublic:
    """Runs in id order; `next_cursor` fetches the next page; `limit` is capped by the server."""
    values = {
        "llm": llm,
        "slm": slm,
        "method": method,
        "router": router,
        "dataset": dataset,
        "status": status,
    }
    where, params = ["r.run_id > ?"], [int(decode_cursor(cursor).get("after", 0))]
    for name in FILTERS:
        if values[name] is not None:
            where.append(f"r.{name} = ?")
            params.append(values[name])  # type: ignore[arg-type]
    page = min(limit, settings.max_rows)
    rows = db.query(
        f"SELECT {RUN_COLUMNS} FROM {RUN_FROM} WHERE {' AND '.join(where)} ORDER BY r.run_id LIMIT ?",
        [*params, page + 1],
        timeout_ms,
    )
    more = len(rows) > page
    rows = rows[:page]
    next_cursor = encode_cursor({"after": rows[-1]["run_id"]}) if more else None
    data = [run_public(r, settings) for r in rows]
    return RunsPublic(data=data, next_cursor=next_cursor, truncated=more)


@router.get("/runs/{run_id}", response_model=RunPublic)
def get_run(run_id: int, db: DbDep, settings: SettingsDep, timeout_ms: TimeoutMs = None) -> RunPublic:
    """One run with its CoF, consult rate and accuracy."""
    rows: list[dict[str, Any]] = db.query(
        f"SELECT {RUN_COLUMNS} FROM {RUN_FROM} WHERE r.run_id = ?", [run_id], timeout_ms
    )
    if not rows:
        raise ApiError(404, "not_found", f"run {run_id} does not exist; list runs at /v1/runs")
    return run_public(rows[0], settings)
