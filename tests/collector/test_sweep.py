"""Sweeps: a TOML grid runs every cell once, skips complete cells on a rerun; the default job end to end."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest
from rich.console import Console

from collector.sweep import default_cells, load_plan, main, run_default_job
from collector.sweeps import shipped_sweeps
from collector.sweeps.sizes import SHIPPED_CONFIGS, cell_models
from tests.conftest import TinyModels
from warehouse import vocabulary


def _runs(path: Path) -> list[tuple[str, str, str]]:
    with duckdb.connect(str(path), read_only=True) as con:
        return con.execute("SELECT method, router, status FROM runs ORDER BY run_id").fetchall()


def test_sweep_runs_each_cell_once(
    tiny_models: TinyModels,
    warehouse_path: Path,
    prompts_file: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    config = tmp_path / "sweep.toml"
    config.write_text(
        f'pairs = [["{tiny_models.llm}", "{tiny_models.slm}"]]\n'
        'methods = ["oracle", "contrastive"]\n'
        'routers = [{router = "always"}, {router = "entropy", threshold = 1.0}]\n'
        'datasets = ["builtin:choice"]\nsamples = 2\nmax_new_tokens = 4\n'
    )
    assert main([str(config), "--dry-run"]) == 0
    assert main([str(config), "--warehouse", str(warehouse_path)]) == 0
    first = _runs(warehouse_path)
    assert len(first) == 4 and all(status == "complete" for *_, status in first)
    assert main([str(config), "--warehouse", str(warehouse_path)]) == 0
    assert _runs(warehouse_path) == first  # nothing ran twice
    assert "4 skipped" in capsys.readouterr().out


def test_bad_sweep_file_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('methods = ["telepathy"]\npairs = [["a", "b"]]\n')
    assert main([str(bad), "--dry-run"]) == 2
    assert "unknown method 'telepathy'" in capsys.readouterr().out


def test_default_job_covers_every_zoo_pair_and_method(tmp_path: Path) -> None:
    from collector.zoo import zoo_pairs

    cells = default_cells(samples=2, max_new_tokens=4)
    pairs = {(c.llm, c.slm) for c in cells if c.router == "always"}
    assert pairs == {(f"zoo:{llm}", f"zoo:{slm}") for llm, slm in zoo_pairs()}
    assert {c.method for c in cells} == set(vocabulary.default_methods())
    path = tmp_path / "default.duckdb"
    console = Console(record=True, width=200)
    assert run_default_job(path, console, samples=2, max_new_tokens=4) == 0
    text = console.export_text()
    assert "Which law the pairs support" in text and "CoF by pair and method" in text
    runs = _runs(path)
    assert len(runs) == len(cells) and all(status == "complete" for *_, status in runs)


def test_dry_run_is_a_table_of_cells_with_their_settings(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "sweep.toml"
    config.write_text(
        'pairs = [["zoo:zoo-s", "zoo:zoo-xs"]]\n'
        'methods = [{method = "contrastive", lam = [0.5, 1.5]}]\n'
        '[[datasets]]\nname = "gsm8k"\npath = "data/gsm8k.jsonl"\nshots = 8\n'
    )
    assert main([str(config), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "2 cells" in out and "lam=1.5" in out and "dataset_path=data/gsm8k.jsonl shots=8" in out
    assert out.count("zoo:zoo-s ") >= 2 and "KiB" in out  # one row per cell, with its weight bytes


def test_a_failed_cell_is_counted_and_the_exit_status_says_so(
    warehouse_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "sweep.toml"
    config.write_text(
        'pairs = [["zoo:zoo-s", "zoo:zoo-xs"]]\nmethods = ["oracle"]\nsamples = 2\nmax_new_tokens = 4\n'
        f'datasets = [{{name = "gsm8k", path = "{tmp_path / "missing.jsonl"}"}}, "builtin:arith"]\n'
    )
    assert main([str(config), "--warehouse", str(warehouse_path)]) == 1
    out = capsys.readouterr().out
    assert "1 ran, 0 resumed, 0 skipped, 1 failed" in out and "missing.jsonl" in out
    assert [status for *_, status in _runs(warehouse_path)] == ["complete"]


def test_a_shipped_sweep_is_named_and_an_unknown_one_is_a_clear_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["no-such-sweep", "--dry-run"]) == 2
    out = capsys.readouterr().out
    assert "cannot read sweep no-such-sweep" in out and "paper" in out
    assert "paper" in shipped_sweeps()


def test_dry_run_sizes_models_not_on_disk_from_shipped_configs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The paper's models are not on this disk: their shipped config.json files give the counts
    (the Pythia paper's published totals) and the memory; a model with no shipped config is an error."""
    config = tmp_path / "sweep.toml"
    config.write_text(
        'pairs = [["./models/pythia-160m", "./models/pythia-70m"]]\nmethods = ["oracle"]\n'
        'datasets = ["builtin:arith"]\n'
    )
    assert main([str(config), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "162,322,944" in out and "70,426,624" in out and "shipped with fsgen" in out
    assert all((SHIPPED_CONFIGS / Path(m).name / "config.json").exists() for m in paper_models())
    config.write_text(config.read_text().replace("pythia-70m", "pythia-5m"))
    assert main([str(config), "--dry-run"]) == 2
    assert "pythia-5m" in capsys.readouterr().out


def paper_models() -> set[str]:
    return {m for c in load_plan("paper", None).cells for m in cell_models(c)}
