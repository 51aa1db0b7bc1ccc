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
from typing import Any

import duckdb
import httpx
import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from api.process import api_process
from collector.config import RunConfig
from collector.engine import run_collection
from warehouse.migrate import upgrade

CHROMIUM = Path("/usr/bin/chromium")
SHOTS = Path(os.environ.get("FSGEN_SCREENSHOTS", Path(__file__).resolve().parents[2] / "bench/out/dashboard"))
MARKS = """sel => { const out = {};
  for (const g of document.querySelectorAll(sel + ' svg g.role-mark')) {
    const kind = [...g.classList].find(c => c.startsWith('mark-')).slice(5);
    out[kind] = (out[kind] || 0) + g.children.length;
  }
  return out; }"""


@dataclass
class Watched:
    """A page and everything that went wrong on it."""

    page: Page
    errors: list[str] = field(default_factory=list)

    def check(self) -> None:
        """Nothing went wrong; the page closes (its polling stops)."""
        assert self.errors == [], self.errors
        self.page.close()


# (llm, slm, method, router, threshold): four pairs of oracle runs for the scaling and position charts,
# one speculative run for acceptance by draft position, a contrastive one, and one routed run.
RUNS = (
    ("zoo-s", "zoo-xs", "oracle", "always", None),
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


TOKEN = "s3cret"
# A collector process that has done its imports (seconds on a busy machine) and waits for a line on stdin
# before running `collector.run.main` with its arguments: the live test then sees staging start at once.
GATED_COLLECTOR = (
    "import sys; import collector.run, transformers.models.gpt_neox.modeling_gpt_neox; "
    "sys.stdin.readline(); sys.exit(collector.run.main(sys.argv[1:]))"
)


@pytest.fixture(scope="module")
def gated_collector(zoo_warehouse: Path) -> Iterator[subprocess.Popen[str]]:
    """A real collector subprocess for one more run, started early, waiting for the go."""
    args = ["--llm", "zoo:zoo-s", "--slm", "zoo:zoo-xs", "--dataset", "builtin:choice", "--samples", "4",
            "--max-new-tokens", "8", "--batch-size", "2", "--warehouse", str(zoo_warehouse), "--quiet",
            "--threads", "1"]  # fmt: skip
    proc = subprocess.Popen(
        [sys.executable, "-c", GATED_COLLECTOR, *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    yield proc
    if proc.poll() is None:
        proc.kill()
        proc.wait()


@pytest.fixture(scope="module")
def base(zoo_warehouse: Path, gated_collector: subprocess.Popen[str]) -> Iterator[str]:
    """`python -m api` over the fixture, with FSGEN_API_TOKEN set (the pages get it from localStorage)."""
    with api_process(zoo_warehouse, env={"FSGEN_API_TOKEN": TOKEN}) as (url, _):
        yield url


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.fail(
            "the dashboard tests need Debian's chromium: apt-get install -y chromium (.ci/run does it)"
        )
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox", "--disable-gpu"])
        yield b
        b.close()


def watch(browser: Browser, width: int = 1280, height: int = 900, token: bool = True) -> Watched:
    """A fresh page (with the token stored, unless told) that records console errors, page errors,
    failed requests and HTTP errors."""
    page = browser.new_page(viewport={"width": width, "height": height}, accept_downloads=True)
    if token:
        page.add_init_script(f"localStorage.setItem('fsgen.api_token', {TOKEN!r})")
    w = Watched(page)
    page.on("console", lambda m: w.errors.append(f"console: {m.text}") if m.type == "error" else None)
    page.on("pageerror", lambda e: w.errors.append(f"page error: {e}"))
    page.on("requestfailed", lambda r: w.errors.append(f"failed: {r.url} {r.failure}"))
    page.on("response", lambda r: w.errors.append(f"{r.status}: {r.url}") if r.status >= 400 else None)
    return w


def open_ready(w: Watched, url: str) -> Page:
    """Go to `url` and wait until its script says it has drawn everything."""
    w.page.goto(url)
    w.page.wait_for_selector("body[data-ready='1']", timeout=30_000)
    return w.page


def shot(page: Page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def rows(warehouse: Path, sql: str, params: list[object] | None = None) -> list[tuple[Any, ...]]:
    """Expected facts, from the copy of the fixture the API does not hold."""
    with duckdb.connect(str(warehouse.with_name("truth.duckdb")), read_only=True) as con:
        return con.execute(sql, params or []).fetchall()


def count(warehouse: Path, sql: str) -> int:
    return int(rows(warehouse, sql)[0][0])


COMPLETE = "FROM runs r WHERE r.status = 'complete'"


# Each colour legend of a chart lists its series: [(colour, label), ...] per legend title.
LEGENDS = """sel => Object.fromEntries([...document.querySelectorAll(sel + ' svg g.role-legend')].map(l => {
  const labels = [...l.querySelectorAll('g.role-legend-label text')].map(t => t.textContent);
  const colour = p => [p.getAttribute('fill'), p.getAttribute('stroke')].find(c => c && c !== 'transparent');
  const colours = [...l.querySelectorAll('g.role-legend-symbol path')].map(colour);
  const title = l.querySelector('.role-legend-title text')?.textContent;
  return [title, colours.map((c, i) => [c, labels[i]])]; }))"""
AXIS_LABELS = """sel => [...document.querySelectorAll(sel + ' svg g.role-axis-label')].map(g =>
  [...g.querySelectorAll('text')].map(t => t.textContent).filter(Boolean))"""
COLOUR_LEGENDS = ("method · settings", "LLM / SLM", "predictor", "router", "token")


def assert_readable(page: Page, chart: str) -> None:
    """Every colour legend of the chart gives each series a colour of its own, and every axis labels at
    least two ticks (a lone "0" says nothing)."""
    for title, entries in page.evaluate(LEGENDS, f"#{chart}").items():
        if title in COLOUR_LEGENDS:
            assert len({c for c, _ in entries}) == len(entries), (chart, title, entries)
    for labels in page.evaluate(AXIS_LABELS, f"#{chart}"):
        assert len(set(labels)) >= 2 or len(labels) == 1 and chart in ("cof", "auroc"), (chart, labels)


def expected_marks(wh: Path) -> dict[str, dict[str, int]]:
    """Marks each overview chart must draw for the fixture, counted from the warehouse itself."""
    # CoF bars: one per identity (the entropy-routed oracle run is a bar of its own, not pooled).
    groups = count(wh, f"SELECT count(*) FROM (SELECT DISTINCT llm, slm, method, identity {COMPLETE})")
    pairs = count(wh, f"SELECT count(*) FROM (SELECT DISTINCT llm, slm {COMPLETE})")
    # AUROC needs both classes: pairs with at least one mismatch.
    disagree = ("SELECT count(*) FROM (SELECT DISTINCT r.llm, r.slm FROM token_events e JOIN runs r "
                "USING (run_id) WHERE r.status = 'complete' AND e.mismatch)")  # fmt: skip
    disagreeing = count(wh, disagree)
    points = count(wh, "SELECT count(*) FROM pair_cof WHERE router = 'always'")
    fitted = count(wh, "SELECT count(*) FROM (SELECT method FROM pair_cof WHERE router = 'always' "
                       "GROUP BY method, dataset HAVING count(DISTINCT param_ratio) >= 3)")  # fmt: skip
    # A pair without mismatches has no share to draw (0 / 0): the fixture's zoo-l / zoo-s pair agrees on all
    # 64 tokens.
    deciles = count(wh, "SELECT count(*) FROM (SELECT DISTINCT r.llm, r.slm, p.bin FROM position_profile p "
                        "JOIN runs r USING (run_id) WHERE r.status = 'complete' "
                        "AND p.mismatch_share IS NOT NULL)")  # fmt: skip
    bins = count(wh, "SELECT count(DISTINCT p.bin) FROM entropy_profile p JOIN runs r USING (run_id) "
                     "WHERE r.status = 'complete'")  # fmt: skip
    k = count(wh, "SELECT max(drafted) FROM spec_cycles")
    return {
        "cof": {"rect": groups, "rule": groups},
        "scaling-llm": {"symbol": points},
        "scaling-slm": {"symbol": points},
        "scaling-ratio": {"line": fitted, "symbol": points},  # bands: identified laws only (below)
        "positions": {"line": 2 * pairs, "symbol": deciles},
        "auroc": {"rect": 3 * disagreeing},
        "entropy": {"rect": 2 * bins},
        "pareto": {"line": 3, "rule": 1},
        "speculative": {"line": 1, "symbol": k},
    }


def test_overview_draws_every_chart_with_the_fixtures_marks(
    browser: Browser, base: str, zoo_warehouse: Path
) -> None:
    w = watch(browser)
    page = open_ready(w, f"{base}/")
    states = page.eval_on_selector_all(
        ".card", "els => els.map(e => [e.id, e.querySelector('.chart').dataset.state])"
    )
    assert [s for _, s in states] == ["rendered"] * len(states) and len(states) == 9, states
    for chart, marks in expected_marks(zoo_warehouse).items():
        drawn = page.evaluate(MARKS, f"#{chart}")
        assert {k: drawn.get(k, 0) for k in marks} == marks, (chart, drawn)
    assert page.evaluate(MARKS, "#pareto")["symbol"] > 3  # the curves have points
    # a band only where the paper's law is identified (an unidentified one is its limit, dashed, no band)
    fits = httpx.get(f"{base}/v1/scaling", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60).json()
    identified = sum(1 for g in fits["fits"] if g["fit"] and g["note"] == "ok")
    assert page.evaluate(MARKS, "#scaling-ratio").get("area", 0) == identified
    for chart in expected_marks(zoo_warehouse):
        assert_readable(page, chart)
    # the fits are a table, one row per fitted series (method, dataset, setup), not a paragraph
    fitted = (
        "SELECT count(*) FROM (SELECT DISTINCT method, dataset, setup FROM pair_cof WHERE router = 'always')"
    )
    series = count(zoo_warehouse, fitted)
    assert page.locator("#scaling-ratio .detail tbody tr").count() == series
    spec_runs = count(zoo_warehouse, f"SELECT count(*) {COMPLETE} AND r.method = 'speculative'")
    assert page.locator("#speculative .detail tbody tr").count() == spec_runs
    assert "builtin:arith" in (page.locator("#speculative svg").text_content() or "")  # a panel per dataset
    shot(page, "overview")
    with page.expect_download() as dl:
        page.click("#cof .downloads button[data-fmt='csv']")
    lines = Path(dl.value.path()).read_text().splitlines()
    assert lines[0].startswith("pair,") and "cof_lo" in lines[0]
    assert len(lines) == 1 + expected_marks(zoo_warehouse)["cof"]["rect"]
    page.select_option("select[name=method]", "speculative")  # a filter redraws every chart
    page.wait_for_selector("body[data-ready='1']")
    assert page.evaluate(MARKS, "#cof")["rect"] == 1
    for chart in ("scaling-llm", "scaling-slm"):  # one pair: one size on each axis, still a readable axis
        assert page.evaluate(MARKS, f"#{chart}")["symbol"] == 1
        assert_readable(page, chart)
    page.select_option("select[name=method]", "")
    page.wait_for_selector("body[data-ready='1']")
    drawn = int(page.evaluate("document.body.dataset.drawn"))
    page.set_viewport_size({"width": 390, "height": 844})  # a phone: no sideways scrolling, charts refit
    page.wait_for_function(f"document.body.dataset.drawn > {drawn} && document.body.dataset.ready === '1'")
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    assert page.evaluate("document.querySelector('#cof svg').getBoundingClientRect().right") <= 390
    shot(page, "overview-phone")
    w.check()


def spans(page: Page) -> list[dict[str, Any]]:
    return page.eval_on_selector_all(
        "#tokens .tok",
        "els => els.map(e => ({text: e.textContent, cls: [...e.classList].filter(c => c !== 'tok')}))",
    )


def texts_of(ids: list[int]) -> list[str]:
    """Each token id decoded alone by the zoo's tokenizer (independently of the API)."""
    from transformers import AutoTokenizer

    from collector.zoo import resolve_model_path

    tok = AutoTokenizer.from_pretrained(resolve_model_path("zoo:zoo-l"))
    return [tok.decode([i]) or "∅" for i in ids]


def run_id_of(wh: Path, method: str, router: str = "always") -> int:
    return int(
        rows(wh, "SELECT run_id FROM runs WHERE method = ? AND router = ? ORDER BY run_id", [method, router])[
            0
        ][0]
    )


@pytest.mark.parametrize("method", ["oracle", "speculative"])
def test_token_view_marks_exactly_the_recorded_mismatches(
    browser: Browser, base: str, zoo_warehouse: Path, method: str
) -> None:
    run_id = run_id_of(zoo_warehouse, method)
    events = rows(
        zoo_warehouse,
        "SELECT token_id, mismatch, accepted, llm_prob FROM token_events WHERE run_id = ? AND sample_id = 0 "
        "ORDER BY step",
        [run_id],
    )
    assert any(e[1] for e in events) and not all(e[1] for e in events)  # the fixture has both kinds
    w = watch(browser)
    page = open_ready(w, f"{base}/runs/{run_id}/samples/0")
    got = spans(page)
    assert [s["text"] for s in got] == texts_of([e[0] for e in events])
    if method == "speculative":
        want = [["acc"] if acc else ["rej"] if mis else ["bonus"] for _, mis, acc, _ in events]
    else:
        want = [["s2"] if mis else ["s1"] for _, mis, _, _ in events]
    assert [s["cls"] for s in got] == want
    assert page.locator(".prompt").inner_text().startswith("Question:")  # prompt told apart from output
    first_mismatch = next(i for i, e in enumerate(events) if e[1])
    page.hover(f"#tokens .tok[data-i='{first_mismatch}']")
    tip = page.locator("#tip")
    assert tip.is_visible() and f"{events[first_mismatch][3]:.3f}" in tip.inner_text()
    shot(page, f"tokens-{method}")
    page.focus("#tokens")  # keyboard: the arrow keys walk the tokens
    page.keyboard.press("End")
    assert f"step {len(events) - 1}" in tip.inner_text()
    page.keyboard.press("ArrowLeft")
    assert f"step {len(events) - 2}" in tip.inner_text()
    page.set_viewport_size({"width": 390, "height": 844})  # a phone: the text wraps, nothing scrolls sideways
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    shot(page, f"tokens-{method}-phone")
    w.check()


def test_a_2000_token_sample_renders_in_under_a_second(
    browser: Browser, base: str, zoo_warehouse: Path
) -> None:
    """The real sample's answer, its tokens repeated to 2,000, through the page's own code."""
    run_id = run_id_of(zoo_warehouse, "oracle")
    w = watch(browser)

    def longer(route: Any) -> None:
        body = route.fetch().json()
        body["tokens"] = [dict(t, step=i) for i, t in enumerate((body["tokens"] * 2000)[:2000])]
        route.fulfill(json=body)

    w.page.route(f"**/v1/runs/{run_id}/samples/0", longer)
    page = open_ready(w, f"{base}/runs/{run_id}/samples/0")
    assert page.locator("#tokens .tok").count() == 2000
    render_ms = float(page.get_attribute("#tokens", "data-render-ms") or "inf")
    assert render_ms < 1000, render_ms
    w.check()


def test_run_page_shows_settings_charts_and_samples(browser: Browser, base: str, zoo_warehouse: Path) -> None:
    run_id = run_id_of(zoo_warehouse, "speculative")
    w = watch(browser)
    page = open_ready(w, f"{base}/runs/{run_id}")
    assert page.locator("#samples tbody tr").count() == count(
        zoo_warehouse, f"SELECT count(*) FROM samples WHERE run_id = {run_id}"
    )
    states = page.eval_on_selector_all(".card .chart", "els => els.map(e => e.dataset.state)")
    assert states == ["rendered"] * 3, states  # positions, entropy, acceptance
    assert "speculative" in page.locator("#settings").inner_text()
    shown = set(page.locator("#settings dt").all_inner_texts())
    assert {"draft_k", "draft_stop"} <= shown and not {"alpha", "lam", "weight"} & shown  # its method's only
    shot(page, "run")
    page.click("#samples tbody tr:first-child a")
    page.wait_for_selector("body[data-ready='1']")
    assert page.locator("#tokens .tok").count() == 16
    w.check()


def test_with_a_token_set_the_page_asks_for_it_once(browser: Browser, base: str) -> None:
    w = watch(browser, token=False)
    w.page.goto(f"{base}/runs")
    w.page.fill("#token-dialog input", TOKEN)
    w.page.keyboard.press("Enter")
    w.page.wait_for_selector("body[data-ready='1']", timeout=30_000)
    assert w.page.locator("#runs-table tbody tr").count() == len(RUNS)
    open_ready(w, f"{base}/runs/1")  # a second page: no second question
    assert w.page.locator("#token-dialog").count() == 0
    assert w.page.locator("#samples tbody tr").count() > 0
    w.check()


def test_runs_list_shows_a_run_being_staged(
    browser: Browser, base: str, zoo_warehouse: Path, gated_collector: subprocess.Popen[str]
) -> None:
    """A collector (a real subprocess) stages a new run while the list is open: it shows within 5 s,
    and turns complete, with no reload.

    Last in the module: it adds a run to the shared warehouse (the other tests read the copy made before)."""
    w = watch(browser)
    page = open_ready(w, f"{base}/runs")
    known = page.locator("#runs-table tbody tr").count()
    assert known == len(RUNS)
    staging = zoo_warehouse.with_name(zoo_warehouse.name + ".staging")
    proc = gated_collector
    assert proc.poll() is None and proc.stdin is not None, "the collector died before its start"
    proc.stdin.write("go\n")
    proc.stdin.flush()
    try:
        deadline = time.monotonic() + 90
        while not any(staging.glob("*/run.json")):
            assert proc.poll() is None and time.monotonic() < deadline, "the collector staged nothing"
            time.sleep(0.05)
        staged = time.monotonic()
        new_row = page.locator(f"#runs-table tbody tr:nth-child({known + 1})")
        new_row.wait_for(timeout=5_000)
        shown = time.monotonic() - staged
        assert shown < 5.0
        out, _ = proc.communicate(timeout=120)
        assert proc.returncode == 0, out
        page.wait_for_selector(
            f"#runs-table tbody tr:nth-child({known + 1})[data-status='complete']", timeout=10_000
        )
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    shot(page, "runs")
    w.check()
