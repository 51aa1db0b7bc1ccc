"""GET /health: is the server up, can it read the warehouse, and is the file sound."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel

from api.deps import CursorDep, DbDep
from api.errors import error_responses
from warehouse.migrate import head_revision

router = APIRouter(tags=["health"])


class HealthPublic(BaseModel):
    """Liveness and the schema revision of the file being served (its name only, never its path)."""

    status: str
    warehouse: str
    revision: str | None


@router.get("/health", response_model=HealthPublic, responses=error_responses(400, 405, 500, 503))
async def get_health(cur: CursorDep, db: DbDep) -> HealthPublic:
    """Liveness plus the schema revision of the file; 503 while the file is damaged or DuckDB closed it.

    The cursor opens the file (or reopens it after DuckDB invalidated it) as for any request; an open file's
    schema is at head (checked when it is opened, and no other process can migrate it meanwhile), so no
    query runs and no worker thread is taken: under load, /health answers as fast as a cached answer."""
    if db.problem is not None:  # met by a request or the ingester; cached answers would hide it
        raise db.problem
    return HealthPublic(status="ok", warehouse=db.path.name, revision=head_revision())
