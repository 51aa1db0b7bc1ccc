"""Shared fixtures: real DuckDB files migrated to head."""

from __future__ import annotations

from pathlib import Path

import pytest

from warehouse.migrate import upgrade


@pytest.fixture
def warehouse_path(tmp_path: Path) -> Path:
    """A fresh warehouse file at head."""
    path = tmp_path / "fsgen.duckdb"
    upgrade(path)
    return path
