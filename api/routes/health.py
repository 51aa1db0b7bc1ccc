"""GET /health: is the server up, can it read the warehouse, and is the file sound."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel

from api.deps import AnalystDep, DbDep
from api.errors import error_responses

router = APIRouter(tags=["health"])


class HealthPublic(BaseModel):
    """Liveness and the schema revision of the file being served (its name only, never its path)."""

    status: str
    warehouse: str
    revision: str | None


@router.get("/health", response_model=HealthPublic, responses=error_responses(400, 405, 500, 503))
def get_health(analyst: AnalystDep, db: DbDep) -> HealthPublic:
    """Liveness plus the schema revision of the file; 503 while the file is damaged or DuckDB closed it."""
    if db.problem is not None:  # met by a request or the ingester; cached answers would hide it
        raise db.problem
    rows = analyst.rows("SELECT version_num FROM alembic_version", [], db.timeout_ms, dict)
    return HealthPublic(
        status="ok", warehouse=db.path.name, revision=str(rows[0]["version_num"]) if rows else None
    )
