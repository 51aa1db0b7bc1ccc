"""GET /health: is the server up and can it read the warehouse."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel

from api.deps import DbDep
from warehouse.migrate import current_revision_of

router = APIRouter(tags=["health"])


class HealthPublic(BaseModel):
    status: str
    warehouse: str
    revision: str | None


@router.get("/health", response_model=HealthPublic)
def get_health(db: DbDep) -> HealthPublic:
    """Liveness plus the schema revision of the file being served."""
    return HealthPublic(status="ok", warehouse=str(db.path), revision=current_revision_of(db.connect()))
