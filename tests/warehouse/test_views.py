"""The views' current SQL (`warehouse/views.py`) is what a file migrated to head holds."""

from __future__ import annotations

from pathlib import Path

import duckdb

from warehouse.migrate import upgrade
from warehouse.views import VIEW_NAMES, VIEWS


def _views(con: duckdb.DuckDBPyConnection) -> dict[str, str]:
    rows = con.execute("SELECT view_name, sql FROM duckdb_views() WHERE NOT internal").fetchall()
    return {str(name): str(sql) for name, sql in rows}


def test_the_views_module_is_the_sql_at_head(warehouse_path: Path, tmp_path: Path) -> None:
    with duckdb.connect(str(warehouse_path), read_only=True) as con:
        migrated = _views(con)
    assert set(migrated) == VIEW_NAMES
    # DuckDB stores a view's SQL in its own normal form: write the module's views on a second file at head
    # and compare the stored texts.
    rewritten = tmp_path / "rewritten.duckdb"
    upgrade(rewritten)
    with duckdb.connect(str(rewritten)) as con:
        for name, sql in VIEWS.items():
            con.execute(f"CREATE OR REPLACE VIEW {name} AS {sql}")
    with duckdb.connect(str(rewritten), read_only=True) as con:  # as stored, read back as the other was
        assert _views(con) == migrated
