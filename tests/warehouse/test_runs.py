"""`python -m warehouse runs`: list, tag, exclude/include and delete runs of a warehouse built by ingest."""

from __future__ import annotations

import shutil
from pathlib import Path

import duckdb
import pytest

from tests.synthetic import add_run, config, stage_run
from tests.warehouse.test_summaries import summaries
from warehouse.__main__ import main as warehouse_main
from warehouse.db import duckdb_connection
from warehouse.ingest import ingest_pending
from warehouse.migrate import downgrade, upgrade
from warehouse.runs import RUN_TABLES
from warehouse.settings import staging_dir


def wh(path: Path, *args: str) -> int:
    return warehouse_main(["--warehouse", str(path), "runs", *args])


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[int]]:
    """An oracle run and a speculative run in `default`, an oracle run in experiment `other`."""
    path = tmp_path_factory.mktemp("runs") / "fsgen.duckdb"
    upgrade(path)
    ids = [
        add_run(path, config(), lengths=[5, 9, 7], seed=1),
        add_run(path, config(method="speculative", draft_k=3), lengths=[6, 4], seed=2),
        add_run(path, config(slm="XS", experiment="other"), lengths=[8, 3], seed=3),
    ]
    return path, ids


@pytest.fixture
def three_runs(built: tuple[Path, list[int]], tmp_path: Path) -> tuple[Path, list[int]]:
    """A copy of the built warehouse for one test."""
    path = tmp_path / "fsgen.duckdb"
    shutil.copy(built[0], path)
    return path, built[1]


def rows_of(path: Path, run_id: int) -> dict[str, int]:
    with duckdb.connect(str(path), read_only=True) as con:
        return {
            t: con.execute(f"SELECT count(*) FROM {t} WHERE run_id = ?", [run_id]).fetchall()[0][0]
            for t in RUN_TABLES
        }


def test_list_filters_and_tags(
    three_runs: tuple[Path, list[int]], capsys: pytest.CaptureFixture[str]
) -> None:
    path, (a, b, c) = three_runs
    assert wh(path, "list", "--experiment", "other") == 0
    out = capsys.readouterr().out
    assert "1 run(s)" in out and " XS " in out
    assert wh(path, "tag", str(a), str(b), "--tag", "pilot", "--tag", "zoo") == 0
    assert wh(path, "tag", str(b), "--tag", "zoo", "--remove") == 0
    capsys.readouterr()
    assert wh(path, "list", "--tag", "zoo") == 0
    out = capsys.readouterr().out
    assert "1 run(s)" in out and "pilot,zoo" in out
    assert wh(path, "exclude", str(c)) == 0
    assert "out of every analysis" in capsys.readouterr().out
    assert wh(path, "list", "--excluded") == 0
    assert "1 run(s)" in capsys.readouterr().out
    assert wh(path, "include", str(c)) == 0
    assert wh(path, "list", "--excluded") == 0
    assert "0 run(s)" in capsys.readouterr().out
    assert wh(path, "exclude", "999") == 2
    err = capsys.readouterr().err
    assert err.startswith("error: no run '999'") and err.count("\n") == 1


def test_delete_lists_then_removes_everything_and_summaries_equal_a_rebuild(
    three_runs: tuple[Path, list[int]], capsys: pytest.CaptureFixture[str]
) -> None:
    path, (a, b, c) = three_runs
    before = rows_of(path, b)
    assert before["spec_cycles"] > 0 and before["run_costs"] > 0 and before["histogram_sums"] > 0
    assert before["router_sums"] > 0  # router replay's rows go with the run, and equal a rebuild after
    assert wh(path, "delete", str(b)) == 0
    out = capsys.readouterr().out
    assert "would delete" in out and f"{before['token_events']} token_events" in out
    assert rows_of(path, b) == before  # nothing went without --yes
    assert wh(path, "delete", str(b), "--yes") == 0
    assert f"deleted run(s) {b}" in capsys.readouterr().out
    assert set(rows_of(path, b).values()) == {0}
    assert rows_of(path, a)["token_events"] > 0 and rows_of(path, c)["token_events"] > 0
    with duckdb.connect(str(path), read_only=True) as con:
        kept = summaries(con)
    assert warehouse_main(["--warehouse", str(path), "rebuild-summaries"]) == 0
    with duckdb.connect(str(path), read_only=True) as con:
        assert summaries(con) == kept


def test_delete_refused_while_the_run_is_live(
    warehouse_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    key = stage_run(warehouse_path, config(), lengths=[4, 4], finish=False)  # this process's heartbeat
    with duckdb_connection(warehouse_path) as con:
        ingest_pending(con, warehouse_path)
        run_id = con.execute("SELECT run_id FROM runs WHERE run_key = ?", [key]).fetchall()[0][0]
    assert wh(warehouse_path, "delete", str(run_id), "--yes") == 2
    assert "is live" in capsys.readouterr().err
    assert rows_of(warehouse_path, run_id)["token_events"] == 8
    assert (staging_dir(warehouse_path) / key).exists()


def test_migration_backfills_the_identity_the_collector_writes(three_runs: tuple[Path, list[int]]) -> None:
    path, _ = three_runs
    query = "SELECT run_id, experiment, identity, setup FROM runs ORDER BY run_id"
    with duckdb.connect(str(path), read_only=True) as con:
        written = con.execute(query).fetchall()
    downgrade(path, "0006")
    upgrade(path)
    with duckdb.connect(str(path), read_only=True) as con:
        backfilled = con.execute(query).fetchall()
    assert [r[2:] for r in backfilled] == [r[2:] for r in written]
    assert {r[1] for r in backfilled} == {"default"}  # runs from before experiments join `default`
    assert len({r[2] for r in written}) == 3 and len({r[3] for r in written}) == 2  # two setups
