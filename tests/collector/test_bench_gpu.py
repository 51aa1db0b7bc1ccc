"""The GPU bench's CPU dry run (`python -m bench.bench_gpu --device cpu --tiny`), so it cannot rot."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.bench_gpu import METHODS, main


@pytest.mark.slow
def test_bench_gpu_dry_run_times_every_method_and_checks_identity(tmp_path: Path) -> None:
    assert main(["--device", "cpu", "--tiny", "--out", str(tmp_path)]) == 0
    result = json.loads((tmp_path / "results.json").read_text())
    cells = {(r["pair"], r["dtype"], r["method"], r["batch"]) for r in result["rows"]}
    pairs = {r["pair"] for r in result["rows"]}
    assert len(pairs) == 2 and all(r["tokens"] > 0 and r["seconds"] > 0 for r in result["rows"])
    assert cells == {
        (p, d, m, b)
        for p in pairs
        for d in ("bfloat16", "float32")
        for m in ("generate", *METHODS)
        for b in (1, 4)
    }
    for key, ident in result["identity"].items():
        if key.endswith("float32"):  # fp32: speculative is the LLM's greedy text, sample for sample
            assert ident["identical"] == ident["samples"], (key, ident)
    assert len(result["advisor"]) == 1 and set(result["advisor"]) < set(result["identity"])  # one in --tiny
    for check in result["advisor"].values():
        assert check["predicted_speedup"] > 0 and check["measured_speedup"] > 0
        assert 0 <= check["measured_acceptance"] <= 1
    assert "| speculative |" in (tmp_path / "results.md").read_text()
