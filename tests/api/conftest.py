"""A small warehouse with two ingested runs, served by the app through httpx.ASGITransport."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from api.app import create_app
from api.process import api_process
from api.settings import ApiSettings
from collector.config import RunConfig
from collector.engine import run_collection
from tests.conftest import TinyModels
from tests.synthetic import add_run, compared_runs, config
from warehouse.migrate import upgrade


@pytest.fixture(scope="module")
def served_warehouse(tiny_models: TinyModels, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two complete oracle runs (LLM with SLM, LLM with itself) on a real file."""
    root = tmp_path_factory.mktemp("api")
    path = root / "fsgen.duckdb"
    upgrade(path)
    prompts = root / "p.jsonl"
    prompts.write_text('{"prompt": "the quick"}\n{"prompt": "def add(a"}\n{"prompt": "numbers 0 1"}\n')
    for slm in (tiny_models.slm, tiny_models.llm):
        cfg = RunConfig(llm=str(tiny_models.llm), slm=str(slm), prompts=str(prompts), max_new_tokens=6)
        run_collection(cfg, path, progress=False)
    return path


@pytest.fixture(scope="session")
def rich_warehouse(tiny_models: TinyModels, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Oracle runs (LLM with SLM, LLM with itself) and a speculative run: every route has data."""
    root = tmp_path_factory.mktemp("api_rich")
    path = root / "fsgen.duckdb"
    upgrade(path)
    prompts = root / "p.jsonl"
    prompts.write_text('{"prompt": "the quick"}\n{"prompt": "def add(a"}\n{"prompt": "numbers 0 1"}\n')
    common = {"llm": str(tiny_models.llm), "prompts": str(prompts), "max_new_tokens": 8}
    for cfg in (
        RunConfig(slm=str(tiny_models.slm), **common),
        RunConfig(slm=str(tiny_models.llm), **common),
        RunConfig(slm=str(tiny_models.slm), method="speculative", draft_k=3, **common),
    ):
        run_collection(cfg, path, progress=False)
    return path


@pytest.fixture(scope="module")
def synthetic_warehouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Synthetic runs written through the real staging and ingest (no model runs): an oracle and a
    contrastive run of one pair, and a speculative run."""
    path = tmp_path_factory.mktemp("synthetic") / "fsgen.duckdb"
    compared_runs(path)
    add_run(path, config(method="speculative"), lengths=[6, 9, 4])
    return path


@asynccontextmanager
async def asgi_client(settings: ApiSettings) -> AsyncIterator[tuple[httpx.AsyncClient, FastAPI]]:
    """The app of `settings`, called in-process through httpx.ASGITransport; its file closed after."""
    app = create_app(settings)
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as c:
            yield c, app
    finally:
        app.state.db.close()


@pytest.fixture
async def client(served_warehouse: Path) -> AsyncIterator[httpx.AsyncClient]:
    async with asgi_client(ApiSettings(warehouse=served_warehouse, max_rows=1)) as (c, _):
        yield c


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@contextmanager
def api_server(warehouse: Path) -> Iterator[str]:
    """`python -m api` on `warehouse` as a real process; yields its base URL once /health answers."""
    with api_process(warehouse) as (base, _):
        yield base
