"""The read-only API over a real warehouse, called through httpx.ASGITransport."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from api.app import create_app
from api.settings import ApiSettings
from tests.api.conftest import asgi_client
from warehouse.db import WarehouseDamaged

pytestmark = pytest.mark.anyio


async def test_health(client: httpx.AsyncClient) -> None:
    r = await client.get("/health")
    assert r.status_code == 200 and r.json()["status"] == "ok" and r.json()["revision"]


async def test_health_answers_before_routing_what_the_route_answers(served_warehouse: Path) -> None:
    """A file not opened yet is opened by the route; on an open one (as uvicorn's startup leaves it) a plain
    request takes the fast path, with the route's bytes and its metrics label, and a damaged file's 503
    still comes from the route."""
    settings = ApiSettings(warehouse=served_warehouse)
    async with asgi_client(settings) as (c, app):
        assert not app.state.db.is_open
        routed = await c.get("/health")
        assert app.state.db.is_open and routed.status_code == 200
    async with asgi_client(settings) as (c, app):
        db = app.state.db
        db.connect()
        fast = [await c.get("/health") for _ in range(2)]
        assert [(r.status_code, r.content) for r in fast] == [(200, routed.content)] * 2
        assert fast[0].headers["content-type"] == routed.headers["content-type"] == "application/json"
        metrics = (await c.get("/metrics")).text  # never routed, yet counted under its route
        assert 'fsgen_http_requests_total{method="GET",route="/health",status="200"} 2.0' in metrics
        assert (await c.get("/health", params={"verbose": "1"})).status_code == 400  # checked by the route
        db.problem = WarehouseDamaged(f"{served_warehouse.name} is damaged")
        damaged = await c.get("/health")
        assert damaged.status_code == 503 and damaged.json()["error"]["code"] == "warehouse_damaged"


async def test_runs_are_paginated_with_an_opaque_cursor(client: httpx.AsyncClient) -> None:
    first = (await client.get("/v1/runs", params={"limit": 50})).json()
    assert len(first["data"]) == 1 and first["truncated"] is True  # max_rows=1 caps the page
    second = (await client.get("/v1/runs", params={"cursor": first["next_cursor"]})).json()
    assert len(second["data"]) == 1 and second["next_cursor"] is None and second["truncated"] is False
    ids = [first["data"][0]["run_id"], second["data"][0]["run_id"]]
    assert ids == sorted(ids) and ids[0] != ids[1]


async def test_get_run_and_its_cof(client: httpx.AsyncClient) -> None:
    runs = (await client.get("/v1/runs", params={"status": "complete"})).json()["data"]
    run = (await client.get(f"/v1/runs/{runs[0]['run_id']}")).json()
    assert run["status"] == "complete" and run["method"] == "oracle"
    assert run["tokens"] > 0 and run["cof"] == pytest.approx(run["mismatches"] / run["tokens"])


async def test_cof_by_pair(client: httpx.AsyncClient) -> None:
    pairs = (await client.get("/v1/cof", params=[("group_by", "llm"), ("group_by", "slm")])).json()
    assert len(pairs["data"]) == 1  # the model alone is a baseline, not a pair: asked for below
    params = [("group_by", "llm"), ("group_by", "slm"), ("baselines", "true")]
    body = (await client.get("/v1/cof", params=params)).json()
    assert body["group_by"] == ["llm", "slm"] and len(body["data"]) == 2
    same = [row for row in body["data"] if row["group"]["llm"] == row["group"]["slm"]]
    assert len(same) == 1 and same[0]["cof"] == 0.0  # a model paired with itself never mismatches


async def test_errors_share_one_shape(client: httpx.AsyncClient) -> None:
    for path, status, code in [
        ("/v1/runs/999999", 404, "not_found"),
        ("/v1/cof?group_by=prompt", 400, "invalid_parameter"),
        ("/v1/runs?cursor=eyJ4IjogMX0", 400, "invalid_cursor"),
        ("/v1/runs?cursor=%%%", 400, "invalid_parameter"),
        ("/v1/runs?limit=0", 400, "invalid_parameter"),
    ]:
        r = await client.get(path)
        assert r.status_code == status and r.json()["error"]["code"] == code, path


async def test_read_only(client: httpx.AsyncClient) -> None:
    r = await client.post("/v1/runs", json={})
    assert r.status_code == 405 and r.json()["error"]["code"] == "method_not_allowed"


async def test_bearer_token(served_warehouse: Path) -> None:
    app = create_app(ApiSettings(warehouse=served_warehouse, api_token="s3cret"))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        assert (await c.get("/v1/runs")).status_code == 401
        ok = await c.get("/v1/runs", headers={"Authorization": "Bearer s3cret"})
        assert ok.status_code == 200
        assert (await c.get("/health")).status_code == 200
    app.state.db.close()


async def test_refuses_a_file_behind_head(tmp_path: Path) -> None:
    import duckdb

    path = tmp_path / "old.duckdb"
    duckdb.connect(str(path)).close()
    app = create_app(ApiSettings(warehouse=path))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        r = await c.get("/v1/runs")
    assert r.status_code == 503 and r.json()["error"]["code"] == "warehouse_unavailable"
    assert f"python -m warehouse upgrade --warehouse {path}" in r.json()["error"]["message"]
