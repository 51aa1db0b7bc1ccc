"""Take the README's dashboard screenshots: `python api/dashboard/screenshots/take.py WAREHOUSE [--out DIR]`.

Starts `python -m api --read-only` on the warehouse, opens the overview and the token view of the sample
with the most interventions in Debian's headless Chromium (Playwright), and writes overview.png and
tokens.png (with the tooltip of an intervention shown), each reduced to a 256-colour palette (a third of
the bytes; the charts use far fewer colours).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import httpx
from PIL import Image
from playwright.sync_api import sync_playwright

from api.process import api_process

HERE = Path(__file__).resolve().parent


def _busiest_sample(base: str) -> tuple[int, int]:
    """(run_id, sample_id) of an oracle sample with the most mismatches."""
    runs = [r for r in httpx.get(f"{base}/v1/runs", timeout=30).json()["data"] if r["method"] == "oracle"]
    best = (-1, 0, 0)
    for run in runs:
        for s in httpx.get(f"{base}/v1/runs/{run['run_id']}/samples", timeout=30).json()["data"]:
            best = max(best, (s["mismatches"], run["run_id"], s["sample_id"]))
    return best[1], best[2]


def _small(path: Path) -> None:
    """Rewrite the PNG at `path` with a 256-colour palette."""
    with Image.open(path) as im:
        small = im.convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT)
    small.save(path, optimize=True)


def take(base: str, out: Path) -> None:
    """Write overview.png and tokens.png of the server at `base` into `out`."""
    run_id, sample_id = _busiest_sample(base)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(f"{base}/")
        page.wait_for_selector("body[data-ready='1']", timeout=120_000)
        page.screenshot(path=str(out / "overview.png"), full_page=True)
        page.goto(f"{base}/runs/{run_id}/samples/{sample_id}")
        page.wait_for_selector("body[data-ready='1']", timeout=60_000)
        page.hover("#tokens .tok.s2")
        page.screenshot(path=str(out / "tokens.png"), full_page=False)
        browser.close()
    for name in ("overview.png", "tokens.png"):
        _small(out / name)


def main() -> int:
    """Entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("warehouse", type=Path)
    parser.add_argument("--out", type=Path, default=HERE)
    args = parser.parse_args()
    try:
        with api_process(args.warehouse, args=["--read-only"], stderr=None) as (base, _):
            take(base, args.out)
    except RuntimeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {args.out / 'overview.png'} and {args.out / 'tokens.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
