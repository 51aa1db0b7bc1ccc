"""`python -m warehouse import vllm|sglang|trtllm FILE`: each engine's documented responses land once,
malformed lines are named, and `analytics.advise --against` sets them beside the replay."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest
from polars.testing import assert_frame_equal

from analytics.advise import main as advise_main
from analytics.report_figures import figure_acceptance
from analytics.served import against, served_by_position, served_summary, served_tables
from analytics.speculative import acceptance_by_position, speculative_runs
from api.settings import ApiSettings
from tests.analytics.test_emit import _warehouse
from tests.api.conftest import asgi_client
from tests.conftest import TinyModels
from warehouse.__main__ import main

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "serving"
PAIR = ["--model", "L", "--draft", "S"]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _import(path: Path, engine: str, *extra: str) -> int:
    return main(
        ["--warehouse", str(path), "import", engine, str(FIXTURES / f"{engine}.jsonl"), *PAIR, *extra]
    )


def test_each_engine_lands_once_and_names_its_malformed_lines(
    tiny_models: TinyModels, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "w.duckdb"
    _warehouse(path, tiny_models, (1,))
    assert _import(path, "vllm") == 0
    out = capsys.readouterr().out
    assert "import 1: 2 request(s)" in out and "2 malformed" in out
    assert "line 3: not JSON" in out and "line 4: no metrics.speculative_decoding" in out
    assert _import(path, "sglang") == 0 and "line 3: no integer" in capsys.readouterr().out
    assert _import(path, "trtllm", "--k", "3") == 0
    assert "line 2: accepted 45 > drafted 30" in capsys.readouterr().out
    assert _import(path, "vllm") == 0  # the same file again adds nothing
    assert "import 4: 0 request(s)" in capsys.readouterr().out
    summary = served_summary(path).sort("engine")
    assert summary["engine"].to_list() == ["sglang", "trtllm", "vllm"] and summary["k"].to_list() == [3, 3, 3]
    assert summary["requests"].to_list() == [2, 1, 2] and summary["accepted"].to_list() == [27, 18, 27]
    assert summary["steps"].to_list() == [15, 10, 14]  # TensorRT-LLM: 30 drafted / K 3
    assert summary["imported"].all()
    vllm = served_by_position(path).filter(engine="vllm")
    # histograms [2,1,3,4] + [1,0,1,2]: 13 steps accepted >= 1 of 14 verified position 0
    assert vllm["reached"].to_list() == [14, 11, 10] and vllm["accepted"].to_list() == [11, 10, 6]
    # the route's tables of one model and draft: every import here is L with S, none is L with X
    assert_frame_equal(served_tables(path, "L", "S")[0], served_summary(path))
    assert_frame_equal(served_tables(path, None, "S")[1], served_by_position(path))
    assert [t.height for t in served_tables(path, "L", "X")] == [0, 0]
    with duckdb.connect(str(path), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM served_steps").fetchone() == (4,)  # vLLM detailed
    assert main(["--warehouse", str(path), "import", "sglang", str(FIXTURES / "sglang.jsonl"),
                 "--draft", "S"]) == 2  # fmt: skip
    assert "give --model" in capsys.readouterr().err


def test_against_sets_served_beside_the_replay(
    tiny_models: TinyModels, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "w.duckdb"
    _warehouse(path, tiny_models, (1,))
    assert _import(path, "vllm") == 0
    frame = against(path, 1)
    assert frame["figure"].to_list() == [
        *(f"acceptance at position {i}" for i in range(3)),
        "mean accepted length",
    ]
    assert frame["served"][0] == pytest.approx(11 / 14)
    assert (frame["served_lo"] <= frame["served"]).all() and (frame["replay_lo"] <= frame["replay"]).all()
    assert frame["differs"].to_list() == [
        not (r["served_lo"] <= r["replay_hi"] and r["replay_lo"] <= r["served_hi"])
        for r in frame.iter_rows(named=True)
    ]
    acceptance = acceptance_by_position(path, ["run_id"])
    figure = figure_acceptance(acceptance, speculative_runs(path), served_by_position(path))
    assert [line.get_label() for line in figure.axes[-1].lines] == ["imported vllm: L/S, K=3"]  # the report's
    assert advise_main(["--warehouse", str(path), "--against", "1"]) == 0
    assert "mean accepted length" in capsys.readouterr().out
    assert advise_main(["--warehouse", str(path), "--against", "9"]) == 2


@pytest.mark.anyio
async def test_speculative_route_serves_imported_requests_marked(
    tiny_models: TinyModels, tmp_path: Path
) -> None:

    path = tmp_path / "w.duckdb"
    _warehouse(path, tiny_models, (1,))
    assert _import(path, "sglang") == 0
    async with asgi_client(ApiSettings(warehouse=path, ingest=False)) as (client, _):
        body = (await client.get("/v1/speculative")).json()
        assert [(r["engine"], r["requests"], r["imported"]) for r in body["served"]] == [("sglang", 2, True)]
        assert [a["position"] for a in body["served_acceptance"]] == [0, 1, 2]
        assert (await client.get("/v1/speculative", params={"slm": "other"})).json()["served"] == []
        csv = (await client.get("/v1/speculative", params={"format": "csv"})).text
        assert "served_acceptance" in csv and "sglang" in csv
