"""Each /v1 route on a real warehouse (oracle and speculative runs), through httpx.ASGITransport."""

from __future__ import annotations

import base64
import csv
import io
import json
import logging
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path

import duckdb
import httpx
import numpy as np
import polars as pl
import pyarrow.parquet as pq
import pytest

from analytics.advise import advise, measured
from analytics.frequency import collaboration_frequency
from analytics.positions import early_share, position_profile
from analytics.report import ReportOptions, section_speculative
from analytics.scaling import fit_pairs, predict_cof
from analytics.speculative import speculative_runs
from analytics.summary import format_headline, headline
from api.app import create_app
from api.db import Database
from api.routes.events import sample_chunks
from api.settings import ApiSettings
from tests.analytics.conftest import add_events, add_model, add_run, random_events
from warehouse.migrate import upgrade

pytestmark = pytest.mark.anyio


@pytest.fixture
async def rich(rich_warehouse: Path) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(ApiSettings(warehouse=rich_warehouse, ingest=False, max_rows=2))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as c:
        yield c
    app.state.db.close()


def same_file(path: Path) -> duckdb.DuckDBPyConnection:
    """The file opened as the read-only app opens it (DuckDB allows one configuration per file)."""
    config = Database.of(ApiSettings(warehouse=path, ingest=False)).config()
    return duckdb.connect(str(path), read_only=True, config=config)


async def get_json(client: httpx.AsyncClient, path: str, **params: object) -> dict:  # type: ignore[type-arg]
    r = await client.get(path, params=params)  # type: ignore[arg-type]
    assert r.status_code == 200, r.text
    body: dict = r.json()  # type: ignore[type-arg]
    return body


async def run_ids(client: httpx.AsyncClient, method: str) -> list[int]:
    body = await get_json(client, "/v1/runs", method=method, limit=50)
    ids = [r["run_id"] for r in body["data"]]
    while body["next_cursor"]:
        body = await get_json(client, "/v1/runs", method=method, cursor=body["next_cursor"])
        ids += [r["run_id"] for r in body["data"]]
    return ids


async def test_models_and_timestamps_carry_a_utc_offset(rich: httpx.AsyncClient) -> None:
    models = (await get_json(rich, "/v1/models"))["data"]
    assert len(models) == 2 and all(m["params"] > 0 and m["vocab_size"] for m in models)
    run = (await get_json(rich, "/v1/runs"))["data"][0]
    for stamp in (models[0]["created_at"], run["created_at"], run["finished_at"]):
        assert datetime.fromisoformat(stamp).utcoffset() is not None, stamp


async def test_samples_pages_and_a_sample_with_token_text(
    rich: httpx.AsyncClient, rich_warehouse: Path
) -> None:
    run_id = (await run_ids(rich, "oracle"))[0]
    first = await get_json(rich, f"/v1/runs/{run_id}/samples")
    assert len(first["data"]) == 2 and first["truncated"]
    second = await get_json(rich, f"/v1/runs/{run_id}/samples", cursor=first["next_cursor"])
    assert [s["sample_id"] for s in first["data"] + second["data"]] == [0, 1, 2]
    sample = await get_json(rich, f"/v1/runs/{run_id}/samples/1")
    assert sample["tokenizer"] and len(sample["tokens"]) == sample["n_tokens"]
    assert "".join(t["text"] for t in sample["tokens"]) == sample["output"]
    assert [t["step"] for t in sample["tokens"]] == list(range(sample["n_tokens"]))
    assert all(t["written_by"] == ("s2" if t["mismatch"] else "s1") for t in sample["tokens"])
    assert sample["cof"] == pytest.approx(sum(t["mismatch"] for t in sample["tokens"]) / sample["n_tokens"])
    listed = second["data"][0] if second["data"][0]["sample_id"] == 1 else first["data"][1]
    assert listed["mismatches"] == sample["mismatches"]
    assert (await rich.get(f"/v1/runs/{run_id}/samples/99")).status_code == 404


async def test_events_pages_and_downloads_agree(rich: httpx.AsyncClient, rich_warehouse: Path) -> None:
    run_id = (await run_ids(rich, "oracle"))[0]
    pages, cursor = [], None
    while True:
        body = await get_json(rich, f"/v1/runs/{run_id}/events", **({"cursor": cursor} if cursor else {}))
        pages += body["data"]
        cursor = body["next_cursor"]
        if not cursor:
            break
    nd = await rich.get(f"/v1/runs/{run_id}/events", params={"format": "ndjson"})
    assert nd.headers["content-type"].startswith("application/x-ndjson")
    streamed = [json.loads(line) for line in nd.text.splitlines()]
    pq_resp = await rich.get(f"/v1/runs/{run_id}/events", params={"format": "parquet"})
    table = pq.read_table(io.BytesIO(pq_resp.content))
    with same_file(rich_warehouse) as con:
        (count,) = con.execute("SELECT count(*) FROM token_events WHERE run_id = ?", [run_id]).fetchone() or (
            0,
        )
    assert len(pages) == len(streamed) == table.num_rows == count > 0
    assert [(e["sample_id"], e["step"]) for e in pages] == [(e["sample_id"], e["step"]) for e in streamed]
    assert pl.from_arrow(table).to_dicts()[0]["token_id"] == pages[0]["token_id"]


def test_downloads_sort_a_bounded_chunk_of_samples_at_a_time() -> None:
    sizes = [(0, 40), (1, 30), (2, 50), (5, 10), (6, 100), (9, 1)]
    assert sample_chunks(sizes, rows=60) == [(0, 1), (2, 5), (6, 6), (9, 9)]
    assert sample_chunks([], rows=60) == []


async def test_cof_is_the_analytics_answer(rich: httpx.AsyncClient, rich_warehouse: Path) -> None:
    body = await get_json(rich, "/v1/cof", group_by="method")
    with same_file(rich_warehouse) as con:
        expected = collaboration_frequency(con, ["method"])
    got = {row["group"]["method"]: row for row in body["data"]}
    for row in expected.iter_rows(named=True):
        assert got[row["method"]]["tokens"] == row["tokens"]
        assert got[row["method"]]["cof"] == pytest.approx(row["cof"])
        for col in ("cof_lo", "cof_hi", "design_effect", "cof_mean_lo", "cof_mean_hi"):
            assert got[row["method"]][col] == pytest.approx(row[col], nan_ok=True)


async def test_positions_uncertainty_and_speculative(rich: httpx.AsyncClient, rich_warehouse: Path) -> None:
    (spec_id,) = await run_ids(rich, "speculative")
    positions = await get_json(rich, "/v1/positions", run_id=spec_id, k=2)
    with same_file(rich_warehouse) as con:
        expected = position_profile(con, filters={"run_id": spec_id})
    assert [d["tokens"] for d in positions["deciles"]] == expected["tokens"].to_list()
    assert positions["early"][0]["window"] == "first 2 tokens"
    with same_file(rich_warehouse) as con:
        early = early_share(con, filters={"run_id": spec_id}, k=2).row(0, named=True)
    for key in ("p_value", "enrichment", "enrichment_lo", "enrichment_hi", "fixed_steps", "alternative"):
        assert positions["early"][0][key] == pytest.approx(early[key]), key
    assert early["alternative"] == "two-sided" and "clustered by sample" in positions["early"][0]["test"]
    unc = await get_json(rich, "/v1/uncertainty", group_by="method")
    assert {p["predictor"] for p in unc["predictors"]} == {
        "entropy",
        "one_minus_max_prob",
        "one_minus_margin",
    }
    assert unc["entropy_bins"] and all(b["tokens"] > 0 for b in unc["entropy_bins"])
    spec = await get_json(rich, "/v1/speculative")
    assert [r["run_id"] for r in spec["runs"]] == [spec_id] and spec["runs"][0]["draft_k"] == 3
    assert {a["position"] for a in spec["acceptance"]} == {0, 1, 2}


async def test_the_same_speed_up_on_every_door(
    rich: httpx.AsyncClient,
    rich_warehouse: Path,
    tmp_path: Path,
) -> None:
    """One speculative run quotes one predicted and one measured speed-up on every door (analytics.speedup):
    the analytics function, /v1/speculative (which the dashboard draws), the headline, the report, the
    advisor's prediction for its setting and the advisor's --verify measurement."""
    body = await get_json(rich, "/v1/speculative")
    (api,) = body["runs"]
    with same_file(rich_warehouse) as con:
        (row,) = speculative_runs(con).iter_rows(named=True)
        h = headline(con)
        section = section_speculative(con, ReportOptions(tmp_path, ("png",)))
        advice = advise(con)
        acceptance, _, decode_tps, baseline_tps = measured(con, row["run_id"])
        oracles = con.sql("SELECT run_id FROM runs WHERE method = 'oracle' AND llm <> slm").pl()
    oracle_id = int(oracles["run_id"].min())  # type: ignore[arg-type]
    predicted, measured_ = row["predicted_speedup"], row["measured_speedup"]
    assert predicted > 0 and measured_ > 0  # the tiny pair recorded costs and a paired baseline
    # /v1/speculative
    assert (api["predicted_speedup"], api["measured_speedup"]) == (predicted, measured_)
    # the headline printed by the default job, and the report's table: the same two numbers, labelled
    (head,) = h.speculative.iter_rows(named=True)
    assert (head["predicted_speedup"], head["measured_speedup"]) == (predicted, measured_)
    text = format_headline(h)
    assert "predicted: the run's cycles" in text and "FLOP model" in text
    assert f"{predicted:.4g}" in section.body and f"{measured_:.4g}" in section.body
    # the advisor: its prediction for the run's setting (K = 3, no stop rule) on the pair's oracle run (same
    # prompts, greedy: the replay is the run's cycles), and its --verify measurement of the run
    pick = advice.candidates.filter(
        (pl.col("oracle_run_id") == oracle_id) & (pl.col("draft_k") == 3) & pl.col("draft_stop").is_null()
    )
    assert pick["predicted_speedup"][0] == pytest.approx(predicted, rel=1e-12)
    assert pick["acceptance"][0] == pytest.approx(acceptance, rel=1e-12) == row["acceptance"]
    assert decode_tps / baseline_tps == pytest.approx(measured_, rel=1e-12)
    # /v1/compare of the pair's oracle run (A, not speculative: no speed-up) and the run (B), JSON and CSV
    compared = await get_json(rich, "/v1/compare", a=oracle_id, b=row["run_id"])
    speed = [m for m in compared["metrics"] if m["metric"].startswith("speed-up")]
    assert [(m["a"], m["b"]) for m in speed] == [(None, predicted), (None, measured_)]
    assert all(f"run {oracle_id}: not speculative" in m["interval"] for m in speed)
    r = await rich.get("/v1/compare", params={"a": oracle_id, "b": row["run_id"], "format": "csv"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    table = list(csv.DictReader(io.StringIO(r.text)))
    # greedy speculative decoding writes the LLM's tokens, as the oracle run does: no differing sample
    assert compared["first_differences"] == [] and {x["part"] for x in table} == {"runs", "metrics"}
    assert [float(x["b"]) for x in table if x["metric"].startswith("speed-up")] == [predicted, measured_]


async def test_router_replay_and_best(rich: httpx.AsyncClient) -> None:
    run_id = (await run_ids(rich, "oracle"))[0]
    replay = await get_json(rich, "/v1/routers/replay", run_id=run_id, router="entropy", n_thresholds=4)
    assert replay["exact"] and {r["router"] for r in replay["data"]} == {"entropy"}
    rates = [r["consult_rate"] for r in replay["data"]]
    assert min(rates) == 0.0 and max(rates) == 1.0
    fixed = await rich.get(
        "/v1/routers/replay",
        params=[("run_id", run_id), ("router", "margin"), ("thresholds", 0.5), ("thresholds", 9)],
    )
    assert [r["threshold"] for r in fixed.json()["data"]] == [0.5, 9.0]
    best = await get_json(rich, "/v1/routers/best", run_id=run_id, budget=0.5)
    assert best["best"]["consult_rate"] <= 0.5 and len(best["per_router"]) == 3
    assert (await rich.get("/v1/routers/best", params={"run_id": 10**9, "budget": 0.5})).status_code == 404


async def test_scaling_serialises_the_fits(rich: httpx.AsyncClient) -> None:
    body = await get_json(rich, "/v1/scaling", bootstrap=10)
    assert body["points"] and body["fits"]
    fit = body["fits"][0]
    assert set(fit) >= {"method", "dataset", "pairs", "fit", "note", "leave_one_out"}
    assert fit["fit"] is None and "too few pairs" in fit["note"]  # two pairs: nothing to fit, said so
    params = {"method": "oracle", "dataset": fit["dataset"], "ratio": 2}
    r = await rich.get("/v1/scaling/predict", params={**params, "law": "paper"})
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_enough_data"
    chosen = await rich.get("/v1/scaling/predict", params=params)  # a constant needs two pairs only
    assert chosen.status_code == 404 or chosen.json()["law"] == "constant"


@pytest.fixture(scope="module")
def pairs_warehouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Six oracle pairs of one dataset (synthetic events through the ingest's summary path): enough pairs
    for every candidate law."""
    path = tmp_path_factory.mktemp("pairs") / "fsgen.duckdb"
    upgrade(path)
    rng = np.random.default_rng(0)
    sizes = {"a": 40_000, "b": 120_000, "c": 400_000, "d": 1_500_000}
    with duckdb.connect(str(path)) as con:
        for name, n in sizes.items():
            add_model(con, name, n)
        for llm, slm in (("b", "a"), ("c", "a"), ("d", "a"), ("c", "b"), ("d", "b"), ("d", "c")):
            run = add_run(con, llm=llm, slm=slm, dataset="d")
            cof = 0.05 + 0.03 * np.log(sizes[llm] / sizes[slm])
            add_events(con, run, random_events(rng, samples=6, length=20, cof=cof))
    return path


async def test_scaling_predict_uses_the_chosen_law_and_flags_extrapolation(pairs_warehouse: Path) -> None:
    app = create_app(ApiSettings(warehouse=pairs_warehouse, ingest=False))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as c:
        base = {"method": "oracle", "dataset": "d", "bootstrap": 50}
        inside = await get_json(c, "/v1/scaling/predict", **base, llm_params=400_000, slm_params=120_000)
        far = await get_json(c, "/v1/scaling/predict", **base, llm_params=7 * 10**9, slm_params=5 * 10**8)
        paper = await get_json(c, "/v1/scaling/predict", **base, ratio=5, law="paper")
        fits = await get_json(c, "/v1/scaling")
        other = await c.get("/v1/scaling/predict", params={**base, "ratio": 5, "setup": "no-such-setup"})
    app.state.db.close()
    # setup= filters the pairs: no pair has this one
    assert other.status_code == 404 and "pairs" in other.json()["error"]["message"]
    with same_file(pairs_warehouse) as con:
        expected = predict_cof(con, method="oracle", dataset="d", ratio=400_000 / 120_000,
                               sizes=(400_000, 120_000), bootstrap=50, confidence=0.95)  # fmt: skip
        chosen = fit_pairs(con, method="oracle", dataset="d").laws
    assert chosen is not None and inside["law"] == chosen.form == expected.law
    assert inside["value"] == pytest.approx(expected.value) and inside["identified"] is expected.identified
    assert inside["extrapolated"] is False and far["extrapolated"] is True
    assert far["measured"] == "N_LLM 1.2e+05–1.5e+06, N_SLM 4e+04–4e+05, R 3–37.5"  # said beside the flag
    assert inside["nested_loo_rmse"] == pytest.approx(chosen.nested_loo_rmse)
    assert paper["law"] == "power_ratio" and (paper["identified"] is (paper["note"] == "ok"))
    (group,) = fits["fits"]
    assert group["laws"]["nested_loo_rmse"] == pytest.approx(chosen.nested_loo_rmse)


@pytest.mark.parametrize(
    ("path", "code"),
    [
        ("/v1/runs?frobnicate=1", "unknown_parameter"),
        ("/v1/runs?limit=1&limit=2", "repeated_parameter"),
        ("/v1/runs?method=magic", "invalid_parameter"),
        ("/v1/cof?group_by=prompt", "invalid_parameter"),
        ("/v1/cof?group_by=llm&group_by=llm", "invalid_parameter"),
        ("/v1/positions?k=3&fraction=0.2", "conflicting_parameters"),
        ("/v1/scaling/predict?method=oracle&dataset=d&ratio=2&llm_params=5", "conflicting_parameters"),
        ("/v1/routers/replay?run_id=1&thresholds=0.5&n_thresholds=3", "conflicting_parameters"),
        ("/v1/speculative?method=oracle", "conflicting_parameters"),
        ("/v1/runs/1/events?format=csv", "invalid_parameter"),
        (
            "/v1/runs?cursor=" + base64.urlsafe_b64encode(b'{"after": "x"}').decode().rstrip("="),
            "invalid_cursor",
        ),
        ("/v1/runs?cursor=" + base64.urlsafe_b64encode(b"[1]").decode().rstrip("="), "invalid_cursor"),
    ],
)
async def test_bad_requests_are_400_with_the_allowed_set(
    rich: httpx.AsyncClient, path: str, code: str
) -> None:
    r = await rich.get(path)
    assert r.status_code == 400 and r.json()["error"]["code"] == code, r.text


async def test_unknown_values_name_the_allowed_set(rich: httpx.AsyncClient) -> None:
    assert "'oracle'" in (await rich.get("/v1/runs?method=magic")).json()["error"]["message"]
    assert "limit" in (await rich.get("/v1/runs?frobnicate=1")).json()["error"]["message"]


async def test_405_names_the_allowed_methods(rich: httpx.AsyncClient) -> None:
    for method in ("POST", "PUT", "DELETE", "PATCH"):
        r = await rich.request(method, "/v1/runs")
        assert r.status_code == 405 and r.headers["allow"] == "GET, HEAD"
        assert r.json()["error"]["code"] == "method_not_allowed"


async def test_docs_work_offline(rich: httpx.AsyncClient) -> None:
    page = (await rich.get("/docs")).text
    assert "cdn" not in page.lower() and "/static/swagger-ui/swagger-ui-bundle.js" in page
    for asset in ("swagger-ui-bundle.js", "swagger-ui.css"):
        r = await rich.get(f"/static/swagger-ui/{asset}")
        assert r.status_code == 200 and len(r.content) > 100_000


async def test_every_status_is_documented() -> None:
    doc = create_app(ApiSettings(warehouse=Path("unused.duckdb"))).openapi()
    for path, ops in doc["paths"].items():
        statuses = set(ops["get"]["responses"])
        assert "422" not in statuses and {"200", "400", "405", "500", "503"} <= statuses, path
        if "{" in path:
            assert "404" in statuses, path


async def test_an_unhandled_error_answers_in_the_one_shape_and_is_logged_once(
    rich_warehouse: Path, caplog: pytest.LogCaptureFixture
) -> None:
    app = create_app(ApiSettings(warehouse=rich_warehouse, ingest=False))

    def broken() -> None:
        raise RuntimeError("a bug")

    app.add_api_route("/broken", broken)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        with caplog.at_level(logging.ERROR):
            r = await c.get("/broken")
    assert r.status_code == 500 and r.json() == {
        "error": {
            "status": 500,
            "code": "internal_error",
            "message": "internal error; the server log has details",
        }
    }
    logged = [rec for rec in caplog.records if rec.levelno >= logging.ERROR]
    assert len(logged) == 1 and "a bug" in caplog.text
    app.state.db.close()
