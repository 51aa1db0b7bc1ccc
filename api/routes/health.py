"""GET /health: is the server up, can it read the warehouse, and is the file sound."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel
from starlette.types import ASGIApp, Receive, Scope, Send

from api.db import Database
from api.deps import CursorDep, DbDep
from api.errors import error_responses
from warehouse.migrate import head_revision

router = APIRouter(tags=["health"])


class HealthPublic(BaseModel):
    """Liveness and the schema revision of the file being served (its name only, never its path)."""

    status: str
    warehouse: str
    revision: str | None


def health_of(db: Database) -> HealthPublic:
    """The answer of /health: the file's problem (a 503) if it has one, else ok with its name and schema."""
    if db.problem is not None:  # met by a request or the ingester; cached answers would hide it
        raise db.problem
    return HealthPublic(status="ok", warehouse=db.path.name, revision=head_revision())


@router.get("/health", response_model=HealthPublic, responses=error_responses(400, 405, 500, 503))
async def get_health(cur: CursorDep, db: DbDep) -> HealthPublic:
    """Liveness plus the schema revision of the file; 503 while the file is damaged or DuckDB closed it.

    The cursor opens the file (or reopens it after DuckDB invalidated it) as for any request; an open file's
    schema is at head (checked when it is opened, and no other process can migrate it meanwhile), so no
    query runs and no worker thread is taken. A plain `GET /health` on an open, sound file is answered
    before routing (`HealthFastPath`)."""
    return health_of(db)


HEALTH_ROUTE = router.routes[0]


class HealthFastPath:
    """Answers a plain `GET /health` (no query) on an open file with no problem from `health_of`, without
    routing: under load (orchestrators poll it) it costs what a cached answer costs, not a route's
    dependencies and response model (measured in bench/RESULTS.md). Anything else goes to the route: a
    query string (checked there, a 400), a file not opened yet, or one with a problem (the route reopens
    an invalidated file and answers 503 while it cannot)."""

    def __init__(self, app: ASGIApp, db: Database) -> None:
        self.app = app
        self.db = db
        self._body = b""  # the answer's bytes, built once: the file's name and the schema head are fixed

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        plain = scope["type"] == "http" and scope["method"] == "GET" and not scope["query_string"]
        if not (plain and scope["path"] == "/health" and self.db.problem is None and self.db.is_open):
            await self.app(scope, receive, send)
            return
        if not self._body:
            self._body = health_of(self.db).model_dump_json().encode()
        scope["route"] = HEALTH_ROUTE  # what routing would record: the metrics label the answer by it
        headers = [(b"content-length", str(len(self._body)).encode()), (b"content-type", b"application/json")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": self._body})
