"""The dashboard's pages and assets through the app (no browser): served from the package, nothing outside."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from api.settings import ApiSettings
from tests.api.conftest import asgi_client

pytestmark = pytest.mark.anyio


@pytest.fixture
async def app_client(warehouse_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    async with asgi_client(ApiSettings(warehouse=warehouse_path, api_token="t0ken")) as (c, _):
        yield c


@pytest.mark.parametrize("path", ["/", "/runs", "/runs/3", "/runs/3/samples/0"])
async def test_pages_are_html_without_the_token(app_client: httpx.AsyncClient, path: str) -> None:
    r = await app_client.get(path)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert "/dashboard/static/" in r.text and "http" not in r.text  # nothing from elsewhere


async def test_config_says_a_token_is_needed_and_never_gives_it(app_client: httpx.AsyncClient) -> None:
    r = await app_client.get("/dashboard/config.json")
    assert r.json()["token_required"] is True and "t0ken" not in r.text
    assert set(r.json()) == {"token_required", "method_params"}  # the vocabulary's method settings, no data
    assert (await app_client.get("/v1/runs")).status_code == 401  # the data stays guarded


async def test_vendored_library_and_licences_are_served(app_client: httpx.AsyncClient) -> None:
    for name in ("vega.min.js", "vega-lite.min.js", "vega-embed.min.js"):
        r = await app_client.get(f"/dashboard/static/vendor/{name}")
        assert r.status_code == 200 and "javascript" in r.headers["content-type"] and len(r.content) > 50_000
    for name in ("LICENSE-vega.txt", "LICENSE-vega-lite.txt", "LICENSE-vega-embed.txt"):
        r = await app_client.get(f"/dashboard/static/vendor/{name}")
        assert r.status_code == 200 and "Redistribution and use" in r.text


@pytest.mark.parametrize("name", ["../../app.py", "..%2F..%2Fapp.py", "nope.js", "vendor"])
async def test_nothing_outside_the_static_folder(app_client: httpx.AsyncClient, name: str) -> None:
    r = await app_client.get(f"/dashboard/static/{name}")
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
