"""`create_app(settings)`: the read-only FastAPI app over a warehouse file."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from starlette.responses import Response

from api.db import Database
from api.deps import require_token
from api.errors import error_response, install_error_handlers
from api.ingester import BackgroundIngester
from api.routes import advice, cof, health, runs
from api.settings import ApiSettings


def create_app(settings: ApiSettings) -> FastAPI:
    """Build the app; nothing is opened until the first request (or startup under uvicorn)."""
    db = Database(settings.warehouse, settings.query_timeout_ms, ingest=settings.ingest)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        db.connect()
        ingester = BackgroundIngester(db.cursor, settings.warehouse, settings.ingest_interval_s)
        if settings.ingest:
            ingester.start()
        app.state.ingester = ingester
        yield
        if settings.ingest:
            ingester.stop()
        db.close()

    app = FastAPI(
        title="fsgen",
        version="1",
        lifespan=lifespan,
        description="Read-only analytics over collaborative-decoding traces.",
    )
    app.state.settings = settings
    app.state.db = db
    install_error_handlers(app)

    @app.middleware("http")
    async def get_only(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        if request.method not in ("GET", "HEAD", "OPTIONS"):
            return error_response(405, "method_not_allowed", "this API is read-only: use GET")
        return await call_next(request)

    if settings.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=settings.cors_origins, allow_methods=["GET"])
    app.include_router(health.router)
    guarded = [Depends(require_token)]
    app.include_router(runs.router, dependencies=guarded)
    app.include_router(cof.router, dependencies=guarded)
    app.include_router(advice.router, dependencies=guarded)
    return app
