"""Schema versions: bring a file to head, report where it stands, refuse files that are behind."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import duckdb
import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.ddl.impl import DefaultImpl
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from warehouse.db import WarehouseError, WarehouseLocked, is_lock_error, make_engine
from warehouse.models import Base
from warehouse.views import VIEW_NAMES

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"


class DuckDBImpl(DefaultImpl):
    """Alembic has no built-in DuckDB implementation; DuckDB runs DDL inside transactions."""

    __dialect__ = "duckdb"
    transactional_ddl = True


def compare_type(
    context: object, inspected: object, metadata: object, inspected_type: object, metadata_type: object
) -> bool | None:
    """DuckDB reflects TEXT as VARCHAR and DOUBLE as FLOAT: equal here; anything else, Alembic's rule."""
    same = (isinstance(metadata_type, sa.Text) and type(inspected_type) is sa.String) or (
        isinstance(metadata_type, sa.Double) and type(inspected_type) in (sa.Float, sa.FLOAT)
    )
    return False if same else None


def include_object(obj: object, name: str | None, type_: str, reflected: bool, compare_to: object) -> bool:
    """Views and Alembic's own table are not part of the models' metadata."""
    return not (type_ == "table" and name in VIEW_NAMES | {"alembic_version"})


def alembic_config(path: Path) -> Config:
    """Alembic configuration for one warehouse file, with no alembic.ini needed."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", f"duckdb:///{path}")
    cfg.attributes["target_metadata"] = Base.metadata
    return cfg


def head_revision() -> str:
    """The newest revision in migrations/versions."""
    return _head_of(MIGRATIONS_DIR)


@functools.cache
def _head_of(directory: Path) -> str:
    # Read once per folder: Alembic executes every migration file to find the head (~30 ms), and the
    # server's ingester checks the head before each pass, every half second while a sweep stages.
    cfg = Config()
    cfg.set_main_option("script_location", str(directory))
    head = ScriptDirectory.from_config(cfg).get_current_head()
    assert head is not None, f"{directory}/versions holds no revision"
    return head


def upgrade(path: Path, revision: str = "head") -> None:
    """Apply migrations up to `revision`, creating the file if needed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    engine = make_engine(path)
    with engine.begin() as conn:
        cfg = alembic_config(path)
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)
    engine.dispose()
    _checkpoint(path)


def downgrade(path: Path, revision: str) -> None:
    """Revert migrations down to `revision` ('base' removes everything)."""
    engine = make_engine(path)
    with engine.begin() as conn:
        cfg = alembic_config(path)
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, revision)
    engine.dispose()


def _checkpoint(path: Path) -> None:
    with duckdb.connect(str(path)) as con:
        con.execute("CHECKPOINT")


def current_revision_of(con: duckdb.DuckDBPyConnection) -> str | None:
    """The revision recorded in an open DuckDB connection, None for an empty file."""
    has_table = con.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_name = 'alembic_version'"
    ).fetchall()
    if not has_table[0][0]:
        return None
    rows = con.execute("SELECT version_num FROM alembic_version").fetchall()  # fetchall: no open result
    return str(rows[0][0]) if rows else None


def current_revision(path: Path) -> str | None:
    """The revision of a warehouse file (opened read-only), None if it has no schema yet."""
    if not path.exists():
        return None
    engine = make_engine(path, read_only=True)
    try:
        with engine.connect() as conn:
            rev = MigrationContext.configure(conn).get_current_revision()
    except sa.exc.OperationalError as exc:
        if is_lock_error(exc):
            raise WarehouseLocked(f"{path} is open in another process ({exc.orig})") from exc
        raise
    finally:
        engine.dispose()
    return rev


@dataclass(frozen=True)
class SchemaStatus:
    """Where a warehouse file stands against the migrations."""

    path: Path
    current: str | None
    head: str

    @property
    def at_head(self) -> bool:
        return self.current == self.head


def require_head(con: duckdb.DuckDBPyConnection, path: Path) -> None:
    """Refuse a file whose schema is not at head, naming the command that fixes it."""
    current = current_revision_of(con)
    head = head_revision()
    if current != head:
        found = "no schema" if current is None else f"schema revision {current}"
        raise WarehouseError(
            f"{path} has {found}, but this fsgen needs revision {head}; "
            f"run: python -m warehouse upgrade --warehouse {path}"
        )
