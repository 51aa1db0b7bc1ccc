"""One error shape for every failure: {"error": {"status", "code", "message"}}."""

from __future__ import annotations

import logging
from typing import Any

import duckdb
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from warehouse.db import WarehouseDamaged, WarehouseError

log = logging.getLogger("fsgen.api")

ERROR_DESCRIPTIONS = {
    400: "Bad request: an unknown, repeated or conflicting parameter, or a value outside the allowed set",
    401: "Missing or wrong bearer token (only when the server sets FSGEN_API_TOKEN)",
    404: "No such resource",
    405: "Method not allowed: this API is read-only (GET)",
    500: "Internal error (logged on the server)",
    503: "The warehouse is unavailable or the query ran past its time limit",
}


class ErrorBody(BaseModel):
    status: int
    code: str
    message: str


class ErrorPublic(BaseModel):
    """The body of every error response."""

    error: ErrorBody


class ApiError(Exception):
    """An error a handler raises on purpose, with a stable code."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def error_response(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    """A JSON response in the one error shape."""
    body = ErrorPublic(error=ErrorBody(status=status, code=code, message=message))
    return JSONResponse(body.model_dump(), status_code=status, headers=headers)


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` entries in the one error shape for the given statuses."""
    return {s: {"model": ErrorPublic, "description": ERROR_DESCRIPTIONS[s]} for s in statuses}


def warehouse_error_response(exc: WarehouseError) -> JSONResponse:
    """503 in the one shape: `warehouse_damaged` for a damaged file, else `warehouse_unavailable`."""
    code = "warehouse_damaged" if isinstance(exc, WarehouseDamaged) else "warehouse_unavailable"
    return error_response(503, code, str(exc))


def _validation_message(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors()[:3]:
        where = ".".join(str(p) for p in err.get("loc", ()) if p != "query")
        parts.append(f"{where}: {err.get('msg')}")
    return "; ".join(parts) or "invalid request"


def install_error_handlers(app: FastAPI) -> None:
    """Route every failure through the one error shape."""

    @app.exception_handler(ApiError)
    async def on_api_error(request: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status, exc.code, exc.message)

    @app.exception_handler(StarletteHTTPException)
    async def on_http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed", 401: "unauthorized"}.get(
            exc.status_code, "http_error"
        )
        return error_response(exc.status_code, code, str(exc.detail), headers=dict(exc.headers or {}))

    @app.exception_handler(WarehouseError)
    async def on_warehouse_error(request: Request, exc: WarehouseError) -> JSONResponse:
        return warehouse_error_response(exc)

    @app.exception_handler(duckdb.Error)
    async def on_duckdb_error(request: Request, exc: duckdb.Error) -> JSONResponse:
        err = request.app.state.db.note(exc)
        if err is not None:
            return warehouse_error_response(err)
        if isinstance(exc, duckdb.ConnectionException):  # its connection closed under it by a reopen
            return error_response(503, "warehouse_unavailable", "the warehouse is being reopened; try again")
        log.error("unhandled DuckDB error on %s", request.url.path, exc_info=exc)
        return error_response(500, "internal_error", "internal error; the server log has details")

    @app.exception_handler(RequestValidationError)
    async def on_validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(400, "invalid_parameter", _validation_message(exc))


class CatchAllMiddleware:
    """Any exception no handler took: logged once with its traceback, answered as a 500 in the one shape."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception:
            log.exception("unhandled error on %s %s", scope.get("method"), scope.get("path"))
            if not started:  # a streamed download that broke mid-way can only be cut short
                response = error_response(500, "internal_error", "internal error; the server log has details")
                await response(scope, receive, send)


class ReadOnlyMiddleware:
    """GET and HEAD only: anything else is a 405 that names them in `Allow`."""

    ALLOWED = ("GET", "HEAD")

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] not in self.ALLOWED:
            response = error_response(
                405,
                "method_not_allowed",
                f"this API is read-only: use GET, not {scope['method']}",
                headers={"Allow": ", ".join(self.ALLOWED)},
            )
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)
