"""The dashboard: plain pages and their vendored assets, served by the package (no CDN, no build step).

The pages hold no data; their scripts read the `/v1` routes, with the bearer token when one is set.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse, JSONResponse
from pydantic import BaseModel

from api.deps import SettingsDep
from api.errors import ApiError
from warehouse.vocabulary import METHOD_TERMS

STATIC = Path(__file__).resolve().parent.parent / "dashboard" / "static"
PAGES = STATIC.parent / "pages"

router = APIRouter(include_in_schema=False)


class DashboardConfig(BaseModel):
    """What a page must know before its first `/v1` request."""

    token_required: bool
    # Each method's own settings (warehouse.vocabulary): a run's page shows no other method's.
    method_params: dict[str, list[str]]


def _page(name: str) -> FileResponse:
    return FileResponse(PAGES / f"{name}.html", media_type="text/html", headers={"Cache-Control": "no-cache"})


@router.get("/")
def overview_page() -> FileResponse:
    """The paper's figures over every complete run."""
    return _page("overview")


@router.get("/runs")
def runs_page() -> FileResponse:
    """The runs, with their status, updating while collectors stage batches."""
    return _page("runs")


@router.get("/runs/{run_id}")
def run_page(run_id: int) -> FileResponse:
    """One run: settings, accuracy, CoF, profiles and samples."""
    return _page("run")


@router.get("/runs/{run_id}/samples/{sample_id}")
def sample_page(run_id: int, sample_id: int) -> FileResponse:
    """The token view of one sample."""
    return _page("sample")


@router.get("/compare")
def compare_page() -> FileResponse:
    """Two runs side by side (`?a=&b=`), with the samples whose tokens first differ."""
    return _page("compare")


@router.get("/dashboard/config.json")
def dashboard_config(settings: SettingsDep) -> JSONResponse:
    """Whether the pages must ask for the bearer token (never the token itself); each method's settings."""
    params = {m.name: list(m.params) for m in METHOD_TERMS.values()}
    config = DashboardConfig(token_required=bool(settings.api_token), method_params=params)
    return JSONResponse(config.model_dump())


@router.get("/dashboard/static/{name:path}")
def static_file(name: str) -> FileResponse:
    """A file under the dashboard's static folder; nothing outside it."""
    path = STATIC if "\0" in name else (STATIC / name).resolve()  # the OS refuses a NUL in a path
    if not path.is_relative_to(STATIC) or not path.is_file():
        raise ApiError(404, "not_found", f"no dashboard asset {name!r}")
    return FileResponse(path, headers={"Cache-Control": "public, max-age=3600"})
