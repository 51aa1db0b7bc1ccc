"""Bad input gets a clear error, a non-zero exit, and leaves no run that looks complete."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from collector.run import main
from tests.conftest import TinyModels
from warehouse.migrate import current_revision, downgrade, head_revision


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code = main(["--quiet", "--max-new-tokens", "4", *args])
    captured = capsys.readouterr()
    return code, " ".join((captured.out + captured.err).split())


def _complete_runs(path: Path) -> int:
    with duckdb.connect(str(path), read_only=True) as con:
        row = con.execute("SELECT count(*) FROM runs WHERE status = 'complete'").fetchone()
    return int(row[0]) if row else 0


def test_tokenizer_mismatch(
    capsys: pytest.CaptureFixture[str], tiny_models: TinyModels, warehouse_path: Path, prompts_file: Path
) -> None:
    code, out = _run(
        capsys,
        "--llm",
        str(tiny_models.llm),
        "--slm",
        str(tiny_models.foreign),
        "--prompts",
        str(prompts_file),
        "--warehouse",
        str(warehouse_path),
    )
    assert code == 2
    assert "tokenizers differ at id" in out and "pick models from one family" in out
    assert _complete_runs(warehouse_path) == 0


def test_missing_model_path(
    capsys: pytest.CaptureFixture[str], tiny_models: TinyModels, warehouse_path: Path, prompts_file: Path
) -> None:
    code, out = _run(
        capsys,
        "--llm",
        "./no/such/model",
        "--slm",
        str(tiny_models.slm),
        "--prompts",
        str(prompts_file),
        "--warehouse",
        str(warehouse_path),
    )
    assert code == 2
    assert "does not exist" in out and "zoo:<name>" in out
    assert _complete_runs(warehouse_path) == 0


def test_empty_prompts_file(
    capsys: pytest.CaptureFixture[str], tiny_models: TinyModels, warehouse_path: Path, tmp_path: Path
) -> None:
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    code, out = _run(
        capsys,
        "--llm",
        str(tiny_models.llm),
        "--slm",
        str(tiny_models.slm),
        "--prompts",
        str(empty),
        "--warehouse",
        str(warehouse_path),
    )
    assert code == 2 and "holds no prompts" in out
    assert _complete_runs(warehouse_path) == 0


def test_malformed_prompts_line(
    capsys: pytest.CaptureFixture[str], tiny_models: TinyModels, warehouse_path: Path, tmp_path: Path
) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "ok"}\n{"text": "no prompt field"}\n')
    code, out = _run(
        capsys,
        "--llm",
        str(tiny_models.llm),
        "--slm",
        str(tiny_models.slm),
        "--prompts",
        str(bad),
        "--warehouse",
        str(warehouse_path),
    )
    assert code == 2 and "line 2" in out and "'prompt'" in out


def test_warehouse_behind_head(
    capsys: pytest.CaptureFixture[str], tiny_models: TinyModels, warehouse_path: Path, prompts_file: Path
) -> None:
    downgrade(warehouse_path, "base")
    code, out = _run(
        capsys,
        "--llm",
        str(tiny_models.llm),
        "--slm",
        str(tiny_models.slm),
        "--prompts",
        str(prompts_file),
        "--warehouse",
        str(warehouse_path),
    )
    assert code == 2
    assert f"python -m warehouse upgrade --warehouse {warehouse_path}" in out


def test_missing_warehouse_is_created_at_head(
    capsys: pytest.CaptureFixture[str], tiny_models: TinyModels, tmp_path: Path, prompts_file: Path
) -> None:
    missing = tmp_path / "new" / "fresh.duckdb"
    code, out = _run(
        capsys,
        "--llm",
        str(tiny_models.llm),
        "--slm",
        str(tiny_models.slm),
        "--prompts",
        str(prompts_file),
        "--warehouse",
        str(missing),
    )
    assert code == 0 and f"created {missing} at schema revision {head_revision()}" in out
    assert current_revision(missing) == head_revision() and _complete_runs(missing) == 1


def test_failed_run_is_marked_failed(tiny_models: TinyModels, warehouse_path: Path, tmp_path: Path) -> None:
    """A prompt too long for the model fails mid-run: the run is recorded as failed, never complete."""
    from collector.config import RunConfig
    from collector.engine import run_collection

    prompts = tmp_path / "long.jsonl"
    prompts.write_text('{"prompt": "short"}\n' + '{"prompt": "' + "the quick brown fox " * 200 + '"}\n')
    cfg = RunConfig(
        llm=str(tiny_models.llm),
        slm=str(tiny_models.slm),
        prompts=str(prompts),
        batch_size=1,
        max_new_tokens=4,
    )
    with pytest.raises(ValueError, match="--truncate-prompt"):
        run_collection(cfg, warehouse_path, progress=False)
    with duckdb.connect(str(warehouse_path), read_only=True) as con:
        assert con.execute("SELECT status FROM runs").fetchall() == [("failed",)]
