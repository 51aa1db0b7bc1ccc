"""Doors of the API beyond JSON: comma lists beside repeated parameters, `?format=csv` on aggregates,
Prometheus `/metrics`."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from api.app import create_app
from api.settings import ApiSettings
from tests.api.test_routes import get_json, run_ids

pytestmark = pytest.mark.anyio


@pytest.fixture
async def rich(rich_warehouse: Path) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(ApiSettings(warehouse=rich_warehouse, ingest=False))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as c:
        yield c
    app.state.db.close()


async def test_comma_lists_equal_repeated_parameters(rich: httpx.AsyncClient) -> None:
    repeated = await rich.get("/v1/cof", params=[("group_by", "llm"), ("group_by", "method")])
    comma = await rich.get("/v1/cof", params={"group_by": "llm,method"})
    assert repeated.status_code == comma.status_code == 200
    assert comma.json() == repeated.json() and comma.json()["group_by"] == ["llm", "method"]
    run_id = (await run_ids(rich, "oracle"))[0]
    base = [("run_id", str(run_id)), ("router", "margin")]
    one = await get_json(rich, "/v1/routers/replay", **dict(base), thresholds="0.5,1,2")
    many = await rich.get("/v1/routers/replay", params=[*base, ("thresholds", "0.5"), ("thresholds", "1"),
                                                         ("thresholds", "2")])  # fmt: skip
    assert [r["threshold"] for r in one["data"]] == [0.5, 1.0, 2.0] and one == many.json()
    bad = await rich.get("/v1/cof", params={"group_by": "llm,nonsense"})
    assert bad.status_code == 400 and "group_by.1" in bad.text


async def test_aggregates_answer_csv(rich: httpx.AsyncClient) -> None:
    body = await get_json(rich, "/v1/cof", group_by="llm,method")
    r = await rich.get("/v1/cof", params={"group_by": "llm,method", "format": "csv"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert [(x["llm"], x["method"], int(x["tokens"])) for x in rows] == [
        (d["group"]["llm"], d["group"]["method"], d["tokens"]) for d in body["data"]
    ]
    spec = list(csv.DictReader(io.StringIO((await rich.get("/v1/speculative?format=csv")).text)))
    assert {x["part"] for x in spec} == {"runs", "acceptance"}
    refused = await rich.get("/v1/runs", params={"format": "csv"})  # not an aggregate: a clear 400
    assert refused.status_code == 400 and refused.json()["error"]["code"] == "unknown_parameter"


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


async def test_metrics_count_requests_latency_and_cache(rich: httpx.AsyncClient) -> None:
    for _ in range(3):
        assert (await rich.get("/v1/cof")).status_code == 200
    assert (await rich.get("/v1/runs/987654")).status_code == 404
    r = await rich.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    got = _samples(r.text)
    cof = (("method", "GET"), ("route", "/v1/cof"), ("status", "200"))
    assert got["fsgen_http_requests_total", cof] == 3
    missing = (("method", "GET"), ("route", "/v1/runs/{run_id}"), ("status", "404"))
    assert got["fsgen_http_requests_total", missing] == 1
    assert got["fsgen_http_request_duration_seconds_count", (("route", "/v1/cof"),)] == 3
    assert got["fsgen_cache_hits_total", ()] >= 2  # the 2nd and 3rd /v1/cof
    assert got["fsgen_staged_shards", ()] == 0 and got["fsgen_ingested_events_total", ()] == 0
    assert got["fsgen_ingest_failures_total", (("kind", "quarantined"),)] == 0
