"""GET /v1/cof: collaboration frequency of complete runs, grouped by low-cardinality columns."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel

from api.deps import DbDep, TimeoutMs
from api.errors import ApiError

router = APIRouter(prefix="/v1", tags=["cof"])

# Grouping by anything else (sample, step, token) would return unbounded rows.
GROUPABLE = ("llm", "slm", "method", "router", "dataset", "status")


class CofRow(BaseModel):
    group: dict[str, str | None]
    runs: int
    tokens: int
    consulted: int
    mismatches: int
    cof: float | None
    consult_rate: float | None


class CofPublic(BaseModel):
    group_by: list[str]
    data: list[CofRow]


@router.get("/cof", response_model=CofPublic)
def get_cof(
    db: DbDep,
    group_by: Annotated[list[str] | None, Query()] = None,
    method: str | None = None,
    dataset: str | None = None,
    timeout_ms: TimeoutMs = None,
) -> CofPublic:
    """Pooled CoF = mismatches / tokens per group (default: by llm, slm, method)."""
    groups = group_by or ["llm", "slm", "method"]
    bad = [g for g in groups if g not in GROUPABLE]
    if bad:
        raise ApiError(400, "invalid_group_by", f"cannot group by {bad}; choose from {list(GROUPABLE)}")
    where, params = ["r.status = 'complete'"], []
    for name, value in (("method", method), ("dataset", dataset)):
        if value is not None:
            where.append(f"r.{name} = ?")
            params.append(value)
    cols = ", ".join(f"r.{g}" for g in groups)
    rows = db.query(
        f"SELECT {cols}, count(*) AS runs, CAST(sum(c.tokens) AS BIGINT) AS tokens, "
        "CAST(sum(c.consulted) AS BIGINT) AS consulted, CAST(sum(c.mismatches) AS BIGINT) AS mismatches "
        f"FROM runs r JOIN run_cof c USING (run_id) WHERE {' AND '.join(where)} "
        f"GROUP BY {cols} ORDER BY {cols}",
        params,
        timeout_ms,
    )
    data = [
        CofRow(
            group={g: r[g] for g in groups},
            runs=r["runs"],
            tokens=r["tokens"] or 0,
            consulted=r["consulted"] or 0,
            mismatches=r["mismatches"] or 0,
            cof=r["mismatches"] / r["tokens"] if r["tokens"] else None,
            consult_rate=r["consulted"] / r["tokens"] if r["tokens"] else None,
        )
        for r in rows
    ]
    return CofPublic(group_by=groups, data=data)
