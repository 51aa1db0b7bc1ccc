"""Warehouses are written in a storage version DuckDB 1.x reads; the SQL doors open them read-only."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from warehouse.__main__ import main as warehouse_main
from warehouse.db import STORAGE_VERSION, needs_storage_conversion, storage_version
from warehouse.migrate import current_revision, head_revision
from warehouse.sql import sql_door

# The DuckDB CLI that `make` installs (duckdb-cli, a 1.x release: it cannot read DuckDB 2.0's default format).
DUCKDB_CLI = Path(sys.executable).parent / "duckdb"


def cli(path: Path, sql: str) -> subprocess.CompletedProcess[str]:
    """Run the installed DuckDB CLI on a file, read-only."""
    assert DUCKDB_CLI.exists(), f"no DuckDB CLI at {DUCKDB_CLI}; install it with: make setup"
    return subprocess.run(
        [str(DUCKDB_CLI), "-readonly", "-csv", str(path), "-c", sql],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_new_warehouse_opens_in_the_duckdb_1x_cli(warehouse_path: Path) -> None:
    assert storage_version(warehouse_path) == f"{STORAGE_VERSION}+"
    version = cli(warehouse_path, "SELECT version()")
    assert version.returncode == 0 and version.stdout.split()[-1].startswith("v1.")
    views = cli(warehouse_path, "SELECT count(*) AS n FROM run_cof; SELECT version_num FROM alembic_version")
    assert views.returncode == 0, views.stderr
    assert views.stdout.split() == ["n", "0", "version_num", head_revision()]


def test_upgrade_rewrites_a_newer_storage_format(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "new-format.duckdb"
    with duckdb.connect(str(path)) as con:  # DuckDB 2.0's default storage version
        con.execute("CREATE TABLE notes AS SELECT range AS i FROM range(1000)")
    assert needs_storage_conversion(path)
    refused = cli(path, "SELECT 1")
    assert refused.returncode != 0 and "version number" in refused.stderr
    assert warehouse_main(["--warehouse", str(path), "upgrade"]) == 0
    assert f"rewritten in DuckDB storage version {STORAGE_VERSION}" in capsys.readouterr().out
    assert not needs_storage_conversion(path) and current_revision(path) == head_revision()
    kept = cli(path, "SELECT sum(i) AS s FROM notes")
    assert kept.returncode == 0 and kept.stdout.split() == ["s", str(sum(range(1000)))]
    assert warehouse_main(["--warehouse", str(path), "upgrade"]) == 0  # nothing left to rewrite
    assert "rewritten" not in capsys.readouterr().out


def test_sql_door_prints_tables_and_refuses_writes(warehouse_path: Path) -> None:
    out = io.StringIO()
    assert (
        sql_door(warehouse_path, "SELECT 41 + 1 AS answer; SELECT count(*) AS runs FROM runs", out=out) == 0
    )
    text = out.getvalue()
    assert "answer" in text and "42" in text and "runs" in text
    for write in (
        "DROP TABLE runs",
        "INSERT INTO models (name, path, params, created_at) VALUES ('m', 'p', 1, now())",
    ):
        assert sql_door(warehouse_path, write, out=io.StringIO()) == 1
    with duckdb.connect(str(warehouse_path), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM models").fetchall() == [(0,)]


def test_sql_command_reads_a_script_from_stdin(warehouse_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "warehouse", "--warehouse", str(warehouse_path), "sql"],
        input="SELECT version_num FROM alembic_version;\nSELECT * FROM nowhere;\n",
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1  # the second statement failed, and says why
    assert head_revision() in done.stdout and "nowhere" in done.stderr
