"""`python -m analytics.report` writes its figures and report.md, and refuses bad warehouses clearly."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from analytics.__main__ import main as headline_main
from analytics.report import main
from tests.analytics.conftest import add_speculative_schema, build_sweep
from warehouse.migrate import downgrade


@pytest.fixture
def sweep(empty_warehouse: Path) -> Path:
    with duckdb.connect(str(empty_warehouse)) as con:
        ids = build_sweep(con)
        add_speculative_schema(con)
        for i, accepted in enumerate([5, 2, 0, 3]):
            con.execute("INSERT INTO spec_cycles VALUES (?, 0, ?, 5, ?)", [ids["L/S"], i, accepted])
    return empty_warehouse


def test_report_writes_figures_and_markdown(
    sweep: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "report"
    assert main(["--warehouse", str(sweep), "--out", str(out), "--bootstrap", "50"]) == 0
    names = {p.name for p in out.iterdir()}
    for stem in (
        "cof_vs_ratio",
        "position_heatmap",
        "entropy_distributions",
        "router_pareto",
        "speculative_acceptance",
    ):
        assert {f"{stem}.png", f"{stem}.svg"} <= names
    text = (out / "report.md").read_text()
    for part in (
        "# fsgen report",
        "Scaling law",
        "loo_rmse",
        "Router replay",
        "Speculative decoding",
        "![cof_vs_ratio](cof_vs_ratio.png)",
        "50 bootstrap resamples",
    ):
        assert part in text
    assert "[7/7] wrote" in capsys.readouterr().err


def test_missing_and_behind_warehouses_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], empty_warehouse: Path
) -> None:
    assert main(["--warehouse", str(tmp_path / "nope.duckdb"), "--out", str(tmp_path / "o")]) == 2
    assert "no warehouse at" in capsys.readouterr().err
    downgrade(empty_warehouse, "base")
    assert main(["--warehouse", str(empty_warehouse), "--out", str(tmp_path / "o"), "--quiet"]) == 2
    assert "python -m warehouse upgrade --warehouse" in capsys.readouterr().err
    assert headline_main(["--warehouse", str(empty_warehouse)]) == 2


def test_headline_cli_prints_the_table(sweep: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert headline_main(["--warehouse", str(sweep)]) == 0
    assert "fsgen headline: 6 complete run(s)" in capsys.readouterr().out


def test_help_has_examples() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "analytics.report", "--help"], capture_output=True, text=True, check=True
    )
    assert "examples:" in done.stdout and "--warehouse" in done.stdout


def test_default_warehouse_comes_from_the_environment(
    sweep: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FSGEN_WAREHOUSE", str(sweep))
    out = tmp_path / "env-report"
    assert main(["--out", str(out), "--bootstrap", "0", "--formats", "svg", "--quiet"]) == 0
    assert (out / "cof_vs_ratio.svg").exists() and not (out / "cof_vs_ratio.png").exists()
    assert f"Warehouse `{sweep}`" in (out / "report.md").read_text()
