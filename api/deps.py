"""Dependencies shared by the routes: the database, the settings, the bearer-token guard."""

from __future__ import annotations

import base64
import json
from typing import Annotated, Any

from fastapi import Depends, Header, Query, Request

from api.db import Database
from api.errors import ApiError
from api.settings import ApiSettings


def get_settings(request: Request) -> ApiSettings:
    """The settings the app was built with."""
    settings: ApiSettings = request.app.state.settings
    return settings


def get_db(request: Request) -> Database:
    """The app's read-only database."""
    db: Database = request.app.state.db
    return db


def require_token(
    settings: Annotated[ApiSettings, Depends(get_settings)],
    authorization: Annotated[str | None, Header()] = None,
) -> None:
    """When FSGEN_API_TOKEN is set, every /v1 request carries it as a bearer token."""
    if settings.api_token and authorization != f"Bearer {settings.api_token}":
        raise ApiError(401, "unauthorized", "missing or wrong bearer token (Authorization: Bearer <token>)")


def encode_cursor(state: dict[str, Any]) -> str:
    """An opaque page cursor."""
    return base64.urlsafe_b64encode(json.dumps(state).encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> dict[str, Any]:
    """The state inside a cursor from `encode_cursor`; a bad one is a 400."""
    if not cursor:
        return {}
    try:
        data = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except ValueError as exc:
        raise ApiError(
            400, "invalid_cursor", "the cursor is not one this API issued; start without it"
        ) from exc
    if not isinstance(data, dict):
        raise ApiError(400, "invalid_cursor", "the cursor is not one this API issued; start without it")
    return data


DbDep = Annotated[Database, Depends(get_db)]
SettingsDep = Annotated[ApiSettings, Depends(get_settings)]
TimeoutMs = Annotated[int | None, Query(ge=1, description="lower the server's query time limit (ms)")]
