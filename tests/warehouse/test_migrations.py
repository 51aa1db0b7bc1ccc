"""Every revision walks up and down, and the models match the schema at head."""

from __future__ import annotations

from pathlib import Path

import duckdb
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from warehouse.db import make_engine
from warehouse.migrate import (
    compare_type,
    current_revision,
    downgrade,
    head_revision,
    include_object,
    upgrade,
)
from warehouse.models import Base
from warehouse.views import VIEW_NAMES

VIEWS = set(VIEW_NAMES)


def _tables(path: Path) -> set[str]:
    with duckdb.connect(str(path), read_only=True) as con:
        return {r[0] for r in con.execute("SELECT table_name FROM information_schema.tables").fetchall()}


def test_walk_base_head_base_head(tmp_path: Path) -> None:
    path = tmp_path / "walk.duckdb"
    upgrade(path)
    assert current_revision(path) == head_revision()
    assert {"models", "runs", "samples", "token_events", "ingested_shards"} | VIEWS <= _tables(path)
    downgrade(path, "base")
    assert current_revision(path) is None
    assert _tables(path) <= {"alembic_version"}
    upgrade(path)
    assert current_revision(path) == head_revision()


def test_autogenerate_finds_no_difference_at_head(warehouse_path: Path) -> None:
    engine = make_engine(warehouse_path)
    with engine.connect() as conn:
        ctx = MigrationContext.configure(
            conn, opts={"include_object": include_object, "compare_type": compare_type}
        )
        diff = compare_metadata(ctx, Base.metadata)
    engine.dispose()
    assert diff == []


def test_run_ids_come_from_a_sequence(warehouse_path: Path) -> None:
    with duckdb.connect(str(warehouse_path)) as con:
        ids = [
            con.execute(
                "INSERT INTO runs (run_key, created_at, llm, slm, method, router, dataset, status, "
                "n_samples, seed, temperature, top_p, device, dtype, settings) "
                "VALUES (?, now(), 'l', 's', 'oracle', 'always', 'd', 'running', 1, 0, 0, 1, "
                "'cpu', 'float32', '{}') RETURNING run_id",
                [f"k{i}"],
            ).fetchone()[0]  # type: ignore[index]
            for i in range(3)
        ]
    assert ids == sorted(ids) and len(set(ids)) == 3
