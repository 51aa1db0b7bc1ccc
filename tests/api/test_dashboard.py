"""The dashboard in a real browser (Debian's headless Chromium through Playwright) on a real uvicorn over a
small warehouse of real zoo-model runs: pages load cleanly, charts draw the fixture's marks, the token view
marks exactly the recorded mismatches, and the runs list picks up a run a collector stages meanwhile."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import pytest

from collector.config import RunConfig
from collector.engine import run_collection
from tests.api.conftest import api_server
from warehouse.migrate import upgrade

CHROMIUM = Path("/usr/bin/chromium")
SHOTS = Path(os.environ.get("FSGEN_SCREENSHOTS", Path(__file__).resolve().parents[2] / "bench/out/dashboard"))

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists() or shutil.which("chromium") is None,
    reason="needs Debian's chromium (apt-get install chromium; .ci/run installs it)",
)
sync_api = pytest.importorskip("playwright.sync_api")


@dataclass
class Watched:
    """A page and everything that went wrong on it."""

    page: object
    errors: list[str] = field(default_factory=list)

    def check(self) -> None:
        assert self.errors == [], self.errors


# (llm, slm, method, router, threshold): three pairs of oracle runs for the scaling and position charts,
# one speculative run for acceptance by draft position, a contrastive one, and one routed run.
RUNS = (
    ("zoo-m", "zoo-xs", "oracle", "always", None),
    ("zoo-l", "zoo-xs", "oracle", "always", None),
    ("zoo-l", "zoo-s", "oracle", "always", None),
    ("zoo-l", "zoo-xs", "speculative", "always", None),
    ("zoo-l", "zoo-xs", "contrastive", "always", None),
    ("zoo-l", "zoo-xs", "oracle", "entropy", 1.5),
)


@pytest.fixture(scope="module")
def zoo_warehouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Real collector runs of the zoo models: 4 arithmetic samples of 16 tokens each."""
    path = tmp_path_factory.mktemp("dash") / "fsgen.duckdb"
    upgrade(path)
    for llm, slm, method, router, threshold in RUNS:
        cfg = RunConfig(
            llm=f"zoo:{llm}",
            slm=f"zoo:{slm}",
            method=method,
            router=router,
            threshold=threshold,
            dataset="builtin:arith",
            samples=4,
            max_new_tokens=16,
            batch_size=4,
        )
        run_collection(cfg, path, progress=False)
    truth = path.with_name("truth.duckdb")  # the tests read expectations here while the API holds `path`
    shutil.copy(path, truth)
    if path.with_suffix(".duckdb.wal").exists():
        shutil.copy(path.with_suffix(".duckdb.wal"), truth.with_suffix(".duckdb.wal"))
    return path


@pytest.fixture(scope="module")
def base(zoo_warehouse: Path) -> Iterator[str]:
    with api_server(zoo_warehouse) as url:
        yield url


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox", "--disable-gpu"])
        yield b
        b.close()


def watch(browser: object, width: int = 1280, height: int = 900) -> Watched:
    """A fresh page that records console errors, page errors, failed requests and HTTP errors."""
    page = browser.new_page(viewport={"width": width, "height": height})  # type: ignore[attr-defined]
    w = Watched(page)
    page.on("console", lambda m: w.errors.append(f"console: {m.text}") if m.type == "error" else None)
    page.on("pageerror", lambda e: w.errors.append(f"page error: {e}"))
    page.on("requestfailed", lambda r: w.errors.append(f"failed: {r.url} {r.failure}"))
    page.on("response", lambda r: w.errors.append(f"{r.status}: {r.url}") if r.status >= 400 else None)
    return w


def shot(page: object, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)  # type: ignore[attr-defined]


def rows(warehouse: Path, sql: str, params: list[object] | None = None) -> list[tuple[object, ...]]:
    """Expected facts, from the copy of the fixture the API does not hold."""
    with duckdb.connect(str(warehouse.with_name("truth.duckdb")), read_only=True) as con:
        return con.execute(sql, params or []).fetchall()


def test_overview_draws_every_chart(browser: object, base: str, zoo_warehouse: Path) -> None:
    w = watch(browser)
    page = w.page
    page.goto(f"{base}/")  # type: ignore[attr-defined]
    page.wait_for_selector("body[data-ready='1']", timeout=20_000)  # type: ignore[attr-defined]
    states = page.eval_on_selector_all(  # type: ignore[attr-defined]
        ".card", "els => els.map(e => [e.id, e.querySelector('.chart').dataset.state])"
    )
    assert states and all(state == "rendered" for _, state in states), states
    groups = rows(zoo_warehouse, "SELECT DISTINCT llm, slm, method FROM runs WHERE status = 'complete'")
    bars = page.locator("#cof .chart svg .mark-rect path").count()  # type: ignore[attr-defined]
    assert bars == len(groups)
    shot(page, "overview")
    w.check()


def test_runs_list_shows_a_run_being_staged(browser: object, base: str, zoo_warehouse: Path) -> None:
    """A collector (a real subprocess) stages a new run while the list is open: it shows within 5 s.

    Last in the module: it adds a run to the shared warehouse (the other tests read the copy made before)."""
    w = watch(browser)
    page = w.page
    page.goto(f"{base}/runs")  # type: ignore[attr-defined]
    page.wait_for_selector("#runs-table tbody tr", timeout=10_000)  # type: ignore[attr-defined]
    known = page.locator("#runs-table tbody tr").count()  # type: ignore[attr-defined]
    assert known == len(RUNS)
    staging = zoo_warehouse.with_name(zoo_warehouse.name + ".staging")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "collector.run",
            "--llm",
            "zoo:zoo-s",
            "--slm",
            "zoo:zoo-xs",
            "--dataset",
            "builtin:choice",
            "--samples",
            "4",
            "--max-new-tokens",
            "8",
            "--batch-size",
            "2",
            "--warehouse",
            str(zoo_warehouse),
            "--quiet",
            "--threads",
            "1",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 90
        while not any(staging.glob("*/run.json")):
            assert proc.poll() is None and time.monotonic() < deadline, "the collector staged nothing"
            time.sleep(0.05)
        staged = time.monotonic()
        new_row = page.locator(f"#runs-table tbody tr:nth-child({known + 1})")  # type: ignore[attr-defined]
        new_row.wait_for(timeout=5_000)
        shown = time.monotonic() - staged
        assert shown < 5.0
        out, _ = proc.communicate(timeout=120)
        assert proc.returncode == 0, out
        page.wait_for_selector(  # type: ignore[attr-defined]
            f"#runs-table tbody tr:nth-child({known + 1})[data-status='complete']", timeout=10_000
        )
    finally:
        if proc.poll() is None:
            proc.kill()
    shot(page, "runs")
    w.check()
