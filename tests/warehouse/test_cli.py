"""`python -m warehouse`: upgrade, status, ingest and a Parquet export that polars reads back."""

from __future__ import annotations

from pathlib import Path

import duckdb
import polars as pl
import pytest

from tests.warehouse.test_ingest import _stage
from warehouse.__main__ import main


def test_upgrade_status_ingest_export(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "w.duckdb"
    assert main(["--warehouse", str(path), "status"]) == 0
    assert "-> run upgrade" in capsys.readouterr().out
    assert main(["--warehouse", str(path), "upgrade"]) == 0
    _stage(path, "run-x", shards=2)
    assert main(["--warehouse", str(path), "status"]) == 0
    assert "staged    : 2 shard(s)" in capsys.readouterr().out
    assert main(["--warehouse", str(path), "ingest"]) == 0
    assert "ingested 2 shard(s): 2000 events, 20 samples; 1 run(s) finished" in capsys.readouterr().out
    out = tmp_path / "export"
    assert main(["--warehouse", str(path), "export", "--parquet", str(out)]) == 0
    events = pl.read_parquet(out / "token_events" / "**" / "*.parquet", hive_partitioning=True)
    assert events.height == 2000 and "run_id" in events.columns
    assert pl.read_parquet(out / "runs" / "*.parquet")["status"].to_list() == ["complete"]
    # partition keys inside the files too: a glob read without hive parsing keeps run_id
    samples = pl.read_parquet(out / "samples" / "**" / "*.parquet", hive_partitioning=False)
    assert samples.height == 20 and samples["run_id"].null_count() == 0
    with duckdb.connect(str(path), read_only=True) as con:
        views = [
            r[0] for r in con.execute("SELECT view_name FROM duckdb_views() WHERE NOT internal").fetchall()
        ]
        cof = con.sql("SELECT * FROM run_cof").pl()
    assert views and all((out / v / "data.parquet").exists() for v in views)
    assert pl.read_parquet(out / "run_cof" / "data.parquet").equals(cof)
    assert (out / "run_costs" / "data.parquet").exists()


def test_env_var_names_the_default_warehouse(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("FSGEN_WAREHOUSE", str(tmp_path / "env.duckdb"))
    assert main(["upgrade"]) == 0
    assert (tmp_path / "env.duckdb").exists()


@pytest.mark.parametrize(
    "command", [["rebuild-summaries"], ["downgrade", "base"], ["import", "vllm", "r.jsonl", "--draft", "d"]]
)
def test_commands_that_need_a_file_refuse_a_missing_one_and_create_none(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: list[str]
) -> None:
    path = tmp_path / "typo.duckdb"
    assert main(["--warehouse", str(path), *command]) == 2
    assert f"no warehouse at {path}" in capsys.readouterr().err
    assert not path.exists()  # rebuild-summaries and downgrade left an empty file behind
