"""GET /v1/speculative/advice serves what `analytics.advise.advise` computes."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from analytics.advise import advise

pytestmark = pytest.mark.anyio


async def test_advice_route_serves_the_advisor(client: httpx.AsyncClient, served_warehouse: Path) -> None:
    expected = advise(served_warehouse)  # before the app opens the file (one configuration per process)
    r = await client.get("/v1/speculative/advice")
    assert r.status_code == 200
    body = r.json()
    assert len(body["best"]) == expected.best.height == 1  # the one oracle run of two distinct models
    best = body["best"][0]
    row = expected.best.row(0, named=True)
    assert (best["llm"], best["slm"], best["draft_k"]) == (row["llm"], row["slm"], row["draft_k"])
    assert best["predicted_speedup"] == pytest.approx(row["predicted_speedup"])
    assert best["runner_up_slm"] == best["slm"]  # one draft model: the runner-up is its next setting
    assert len(body["sampling"]) == 1 and 0 < body["sampling"][0]["alpha"] <= 1
