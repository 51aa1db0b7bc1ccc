"""GET /v1/compare and the dashboard's compare page: the analytics comparison, as JSON and as a page."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from analytics.compare import main
from api.app import create_app
from api.settings import ApiSettings
from tests.synthetic import compared_runs


def test_compare_route_and_page(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "fsgen.duckdb"
    a, b = compared_runs(path)
    assert main([str(a), str(b), "--json", "--warehouse", str(path)]) == 0
    cli = json.loads(capsys.readouterr().out)
    app = create_app(ApiSettings(warehouse=path, cache_size=0, ingest=False))
    try:
        with TestClient(app) as client:
            got = client.get("/v1/compare", params={"a": a, "b": b})
            missing = client.get("/v1/compare", params={"a": a, "b": 999})
            page = client.get("/compare", params={"a": a, "b": b})
    finally:
        app.state.db.close()
    assert got.status_code == 200 and missing.status_code == 404
    body = got.json()
    assert [m["difference"] for m in body["metrics"]] == pytest.approx(
        [m["difference"] for m in cli["metrics"]]
    )
    first = body["first_differences"][0]
    assert first["links"] == [
        f"/runs/{a}/samples/{first['sample_a']}",
        f"/runs/{b}/samples/{first['sample_b']}",
    ]
    assert page.status_code == 200 and "compare.js" in page.text
