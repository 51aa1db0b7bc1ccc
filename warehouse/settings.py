"""Warehouse settings: where the DuckDB file lives (`FSGEN_WAREHOUSE`, default ./fsgen.duckdb)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
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


WAREHOUSE_HELP = f"DuckDB file (default: $FSGEN_WAREHOUSE or ./{DEFAULT_WAREHOUSE})"


def add_warehouse_argument(parser: argparse.ArgumentParser) -> None:
    """The `--warehouse` option every entry point takes (resolve it with `resolve_warehouse`)."""
    parser.add_argument("--warehouse", help=WAREHOUSE_HELP)


def staging_dir(warehouse: Path) -> Path:
    """Shards wait here, next to the warehouse file, until they are ingested."""
    return warehouse.with_name(warehouse.name + ".staging")


def whole_number(lowest: int) -> Callable[[str], int]:
    """An argparse type for a count of at least `lowest` (threads, CPUs, resamples): a clear error, not a
    crash or a silent default."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < lowest:
            raise argparse.ArgumentTypeError(f"{value} must be at least {lowest}")
        return value

    return parse


positive_int = whole_number(1)
non_negative_int = whole_number(0)


def command_parser(prog: str, description: str, examples: str) -> argparse.ArgumentParser:
    """An entry point's parser: its `python -m` name, one line of what it does, and its examples as the
    epilog of `--help`, laid out as written."""
    return argparse.ArgumentParser(
        prog=prog,
        description=description,
        epilog=examples,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
