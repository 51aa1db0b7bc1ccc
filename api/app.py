"""`create_app(settings)`: the read-only FastAPI app over a warehouse file."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio.to_thread
import duckdb
from fastapi import APIRouter, Depends, FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.openapi.utils import get_openapi

from api.cache import ResponseCacheMiddleware, ResultCache
from api.db import Database
from api.deps import known_experiment, require_token, strict_query
from api.errors import CatchAllMiddleware, ReadOnlyMiddleware, install_error_handlers
from api.formats import CsvMiddleware
from api.freshness import DataVersions, LiveStatuses
from api.ingester import BackgroundIngester
from api.metrics import Metrics, MetricsMiddleware
from api.metrics import router as metrics_router
from api.routes import (
    advice,
    cof,
    compare,
    dashboard,
    docs,
    events,
    health,
    models,
    positions,
    routers,
    runs,
    samples,
    scaling,
    speculative,
    uncertainty,
)
from api.settings import ApiSettings
from warehouse.db import WarehouseError

V1_ROUTERS: tuple[APIRouter, ...] = (
    models.router,
    runs.router,
    compare.router,
    samples.router,
    events.router,
    cof.router,
    scaling.router,
    uncertainty.router,
    positions.router,
    routers.router,
    speculative.router,
    advice.router,
)


def _openapi(app: FastAPI) -> dict[str, Any]:
    """The OpenAPI document: FastAPI's, less its 422 (this API answers bad parameters with a 400)."""
    if app.openapi_schema is None:
        doc = get_openapi(
            title=app.title, version=app.version, description=app.description, routes=app.routes
        )
        for path in doc.get("paths", {}).values():
            for op in path.values():
                op.get("responses", {}).pop("422", None)
        schemas = doc.get("components", {}).get("schemas", {})
        for name in ("HTTPValidationError", "ValidationError"):
            schemas.pop(name, None)
        app.openapi_schema = doc
    return app.openapi_schema


def create_app(settings: ApiSettings, db: Database | None = None) -> FastAPI:
    """Build the app; nothing is opened until the first request (or startup under uvicorn), unless the
    entry point passes the Database it opened (so no collector can take the file in between)."""
    db = db or Database.of(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Handlers run in the thread pool; on a few cores, more threads than that only queue for the GIL
        # and delay the event loop (and every cached answer) behind them.
        anyio.to_thread.current_default_thread_limiter().total_tokens = settings.worker_threads
        db.connect(wait_s=settings.startup_wait_s)
        try:
            versions.load(db.cursor)
        except (duckdb.Error, WarehouseError) as exc:  # a damaged file: /health and each request answer 503
            if db.note(exc) is None:
                raise
        ingester = BackgroundIngester(
            db.cursor,
            settings.warehouse,
            settings.ingest_interval_s,
            versions,
            on_error=db.note,
            checkpoint_interval_s=settings.checkpoint_interval_s,
        )
        if settings.ingest:
            ingester.start()
        app.state.ingester = ingester
        # Everything imported and built so far (numpy, scipy, polars, pydantic models: ~180,000 objects)
        # lives as long as the server: kept out of the collector's scans, a full collection takes a
        # millisecond, not the ~100 ms that would land on whichever request triggered it.
        gc.freeze()
        yield
        if settings.ingest:
            ingester.stop()
        db.close()

    app = FastAPI(
        title="fsgen",
        version="1",
        lifespan=lifespan,
        description="Read-only analytics over collaborative-decoding traces.",
        docs_url=None,
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.db = db
    app.state.ingester = None
    versions = DataVersions()  # the ingester tells it which runs each pass wrote
    app.state.versions = versions
    app.state.cache = ResultCache(settings.cache_size, versions.version)
    install_error_handlers(app)
    app.add_middleware(health.HealthFastPath, db=db)
    app.add_middleware(CsvMiddleware)
    app.add_middleware(ReadOnlyMiddleware)
    app.state.live = LiveStatuses(settings.warehouse, versions)
    app.add_middleware(ResponseCacheMiddleware, cache=app.state.cache, live=app.state.live)
    if settings.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=settings.cors_origins, allow_methods=["GET"])
    app.add_middleware(CatchAllMiddleware)
    app.state.metrics = Metrics(app)
    app.add_middleware(MetricsMiddleware, metrics=app.state.metrics)
    app.include_router(health.router, dependencies=[Depends(strict_query)])
    app.include_router(docs.router)
    docs.mount_assets(app)
    guarded = [Depends(strict_query), Depends(require_token), Depends(known_experiment)]
    for router in V1_ROUTERS:
        app.include_router(router, dependencies=guarded)
    app.include_router(dashboard.router)
    app.include_router(metrics_router)
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app
