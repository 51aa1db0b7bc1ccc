"""GET /v1/models: the language models that took part in runs."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel, Field

from api.convert import UtcDatetime
from api.db import select
from api.deps import CursorDep, DbDep, SettingsDep, TimeoutMs
from api.errors import error_responses

router = APIRouter(prefix="/v1", tags=["models"])


class ModelPublic(BaseModel):
    """A model: where it was loaded from and its counted parameters."""

    name: str
    path: str
    params: int = Field(description="parameters counted from the loaded weights")
    architecture: str | None
    vocab_size: int | None
    created_at: UtcDatetime
    source: str | None = Field(description="the GGUF file or draft recipe the weights came from")
    quantization: str | None = Field(description="e.g. Q4_1 (GGUF) or rtn4 g32 (a built draft)")


class ModelsPublic(BaseModel):
    """Every model, by name (capped at the server's row limit)."""

    data: list[ModelPublic]
    truncated: bool


@router.get("/models", response_model=ModelsPublic, responses=error_responses(400, 401, 405, 500, 503))
def list_models(
    cur: CursorDep, db: DbDep, settings: SettingsDep, timeout_ms: TimeoutMs = None
) -> ModelsPublic:
    """Name, path, parameters, architecture and vocabulary size of each model."""
    cols = ", ".join(ModelPublic.model_fields)
    rows = select(
        cur,
        f"SELECT {cols} FROM models ORDER BY params, name LIMIT ?",
        [settings.max_rows + 1],
        db.limit_ms(timeout_ms),
    )
    more = len(rows) > settings.max_rows
    return ModelsPublic(data=[ModelPublic(**r) for r in rows[: settings.max_rows]], truncated=more)
