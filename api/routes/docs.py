"""GET /docs: Swagger UI from assets shipped in the package (works offline; no CDN)."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

ASSETS = Path(__file__).resolve().parent.parent / "static" / "swagger-ui"
ASSETS_URL = "/static/swagger-ui"

router = APIRouter(include_in_schema=False)


@router.get("/docs")
def get_docs() -> HTMLResponse:
    """The interactive API documentation."""
    return get_swagger_ui_html(
        openapi_url="/openapi.json",
        title="fsgen API",
        swagger_js_url=f"{ASSETS_URL}/swagger-ui-bundle.js",
        swagger_css_url=f"{ASSETS_URL}/swagger-ui.css",
        swagger_favicon_url=f"{ASSETS_URL}/favicon-32x32.png",
    )


def mount_assets(app: FastAPI) -> None:
    """Serve the vendored Swagger UI files."""
    app.mount(ASSETS_URL, StaticFiles(directory=ASSETS), name="swagger-ui")
