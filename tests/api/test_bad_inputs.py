"""Every analysis door answers bad inputs (NaN, negative, zero, unknown names, conflicts) with a 4xx in the
one error shape, never a 500: analytics' checks raise AnalyticsError, which the API turns into a 400."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import duckdb
import httpx
import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.settings import ApiSettings
from tests.api.conftest import asgi_client

pytestmark = pytest.mark.anyio

# Routes that list or fetch stored rows; every other /v1 route is an analysis door and must be listed below.
RESOURCES = ("/v1/runs", "/v1/models", "/v1/experiments")
NAN, INF = "nan", "inf"
BAD: dict[str, list[dict[str, object]]] = {
    "/v1/cof": [
        *({"confidence": c} for c in (NAN, -0.5, 0, 1, 2)),
        {"group_by": "nope"},
        {"method": "nope"},
    ],
    "/v1/compare": [{"a": -1, "b": 1}, {"a": NAN, "b": 1}, {"a": 1}, {"a": 1, "b": 2, "confidence": 0}],
    "/v1/positions": [
        *({"k": k} for k in (0, -1, NAN)),
        *({"fraction": f} for f in (NAN, -0.1, 0, 1)),
        {"k": 3, "fraction": 0.2},
        {"alternative": "nope"},
        {"group_by": "nope"},
    ],
    "/v1/routers/best": [
        *({"run_id": 1, "budget": b} for b in (NAN, -0.1, 2)),
        {"run_id": -1, "budget": 0.1},
        {"run_id": 1, "budget": 0.1, "router": "nope"},
        {"run_id": 1, "budget": 0.1, "n_thresholds": 0},
        {"run_id": 1},
    ],
    "/v1/routers/replay": [
        *({"run_id": 1, "thresholds": t} for t in (NAN, INF, "-inf")),
        {"run_id": 1, "n_thresholds": 0},
        {"run_id": 1, "thresholds": 0.5, "n_thresholds": 3},
        {"run_id": 1, "router": "nope"},
        {"run_id": -1},
    ],
    "/v1/scaling": [{"bootstrap": -1}, {"seed": -1}, {"router": "nope"}, {"method": "nope"}],
    "/v1/scaling/predict": [
        *({"method": "oracle", "dataset": "d", "ratio": r} for r in (NAN, INF, 0, -2)),
        {"method": "oracle", "dataset": "d", "llm_params": 0, "slm_params": 10},
        {"method": "oracle", "dataset": "d", "llm_params": 10, "slm_params": -1},
        {"method": "oracle", "dataset": "d", "ratio": 2, "bootstrap": 0},
        {"method": "oracle", "dataset": "d", "ratio": 2, "law": "nope"},
        {"method": "oracle", "dataset": "d"},
        {"method": "nope", "dataset": "d", "ratio": 2},
    ],
    "/v1/speculative": [{"group_by": "nope"}, {"method": "oracle"}],
    "/v1/speculative/advice": [{"experiment": ""}],
    "/v1/uncertainty": [{"predictor": "nope"}, {"group_by": "nope"}],
}


@pytest.fixture
async def client(synthetic_warehouse: Path) -> AsyncIterator[httpx.AsyncClient]:
    async with asgi_client(ApiSettings(warehouse=synthetic_warehouse, ingest=False)) as (c, _):
        yield c


async def test_every_analysis_door_is_listed(client: httpx.AsyncClient) -> None:
    paths = (await client.get("/openapi.json")).json()["paths"]
    doors = {p for p in paths if p.startswith("/v1/") and not p.startswith(RESOURCES)}
    assert doors == set(BAD)


@pytest.mark.parametrize("door", list(BAD))
async def test_bad_inputs_are_4xx_in_the_error_shape(client: httpx.AsyncClient, door: str) -> None:
    for params in BAD[door]:
        r = await client.get(door, params=params)  # type: ignore[arg-type]
        assert 400 <= r.status_code < 500, (door, params, r.status_code, r.text[:300])
        error = r.json()["error"]
        assert error["status"] == r.status_code and error["code"] and error["message"], (door, params)


async def test_an_unknown_experiment_is_a_400_naming_the_ones_held(
    client: httpx.AsyncClient, synthetic_warehouse: Path
) -> None:
    with duckdb.connect(str(synthetic_warehouse), read_only=True) as con:
        every = {e for (e,) in con.execute("SELECT DISTINCT experiment FROM runs").fetchall()}
    held = sorted(every)[0]
    paths = (await client.get("/openapi.json")).json()["paths"]
    takes = [
        path
        for path, ops in paths.items()
        if any(q["name"] == "experiment" for q in ops.get("get", {}).get("parameters", []))
    ]
    assert {"/v1/cof", "/v1/scaling", "/v1/runs", "/v1/speculative/advice"} <= set(takes)
    for path in takes:  # through ASGI alone (no lifespan): the runs are not read yet, so the file is asked
        r = await client.get(path, params={"experiment": "no-such"})
        assert r.status_code == 400 and r.json()["error"]["code"] == "unknown_experiment", (path, r.text)
        assert repr(held) in r.json()["error"]["message"]
        ok = await client.get(path, params={"experiment": held})
        assert ok.status_code != 400 or ok.json()["error"]["code"] != "unknown_experiment", path
    app = create_app(ApiSettings(warehouse=synthetic_warehouse, ingest=False))
    try:
        with TestClient(app) as started:  # started: the runs were read at startup
            assert app.state.versions.experiments == every
            assert started.get("/v1/cof", params={"experiment": held}).status_code == 200
            assert started.get("/v1/cof", params={"experiment": "no-such"}).status_code == 400
    finally:
        app.state.db.close()
