"""Warehouse settings: where the DuckDB file lives (`FSGEN_WAREHOUSE`, default ./fsgen.duckdb)."""

from __future__ import annotations

from pathlib import Path

from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_WAREHOUSE = Path("fsgen.duckdb")


class WarehouseSettings(BaseSettings):
    """Read from the environment with the `FSGEN_` prefix."""

    model_config = SettingsConfigDict(env_prefix="FSGEN_", extra="ignore")

    warehouse: Path = DEFAULT_WAREHOUSE


def resolve_warehouse(path: str | Path | None) -> Path:
    """An explicit path wins; else `$FSGEN_WAREHOUSE`; else ./fsgen.duckdb."""
    return Path(path) if path else WarehouseSettings().warehouse


def staging_dir(warehouse: Path) -> Path:
    """Shards wait here, next to the warehouse file, until they are ingested."""
    return warehouse.with_name(warehouse.name + ".staging")
