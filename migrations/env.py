"""Alembic environment: runs against the connection that `warehouse.migrate` hands over."""

from __future__ import annotations

from typing import Any

from alembic import context
from sqlalchemy import create_engine

from warehouse.migrate import compare_type, include_object


def run_migrations() -> None:
    """Migrate through the caller's connection, or open the configured URL."""
    config = context.config
    target_metadata = config.attributes.get("target_metadata")
    connection = config.attributes.get("connection")
    if connection is None:
        engine = create_engine(config.get_main_option("sqlalchemy.url") or "duckdb:///fsgen.duckdb")
        with engine.begin() as conn:
            _configure_and_run(conn, target_metadata)
        engine.dispose()
    else:
        _configure_and_run(connection, target_metadata)


def _configure_and_run(connection: Any, target_metadata: Any) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        include_object=include_object,
        compare_type=compare_type,
        transaction_per_migration=True,
    )
    with context.begin_transaction():
        context.run_migrations()


run_migrations()
