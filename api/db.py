"""The API's read-only view of the warehouse: parameterised queries under a time limit."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import duckdb

from api.errors import ApiError
from warehouse.db import WarehouseError, WarehouseLocked, check_warehouse_file
from warehouse.migrate import require_head


class Database:
    """One DuckDB connection (external access off, configuration locked); a cursor per query.

    With `ingest` the server holds the file read-write so that its background ingester can move staged
    shards in (DuckDB allows no reader beside a writer in another process); requests still run only
    parameterised SELECTs. Without it the file is opened read-only.
    """

    def __init__(self, path: Path, timeout_ms: int, ingest: bool = False) -> None:
        self.path = path
        self.timeout_ms = timeout_ms
        self.ingest = ingest
        self._con: duckdb.DuckDBPyConnection | None = None
        self._lock = threading.Lock()

    def connect(self) -> duckdb.DuckDBPyConnection:
        """Open on first use; refuses a missing file or one whose schema is behind head."""
        with self._lock:
            if self._con is None:
                if not self.path.exists():
                    raise WarehouseError(
                        f"no warehouse at {self.path}; create it with: "
                        f"python -m warehouse upgrade --warehouse {self.path}"
                    )
                check_warehouse_file(self.path)
                try:
                    con = duckdb.connect(
                        str(self.path),
                        read_only=not self.ingest,
                        config={"enable_external_access": False, "lock_configuration": True},
                    )
                except duckdb.IOException as exc:
                    raise WarehouseLocked(f"{self.path} is held by a writer ({exc})") from exc
                require_head(con, self.path)
                self._con = con
            return self._con

    def cursor(self) -> duckdb.DuckDBPyConnection:
        """A fresh cursor on the shared connection (one per thread)."""
        return self.connect().cursor()

    def close(self) -> None:
        """Release the file."""
        with self._lock:
            if self._con is not None:
                self._con.close()
                self._con = None

    def query(
        self, sql: str, params: list[Any] | None = None, timeout_ms: int | None = None
    ) -> list[dict[str, Any]]:
        """Rows as dicts; interrupted (HTTP 503) past the time limit, which a client may only lower."""
        limit = min(timeout_ms or self.timeout_ms, self.timeout_ms)
        cur = self.cursor()
        timer = threading.Timer(limit / 1000, cur.interrupt)
        timer.start()
        try:
            rel = cur.execute(sql, params or [])
            names = [d[0] for d in rel.description or []]
            return [dict(zip(names, row, strict=True)) for row in rel.fetchall()]
        except duckdb.InterruptException as exc:
            raise ApiError(503, "query_timeout", f"query ran past {limit} ms; narrow it or page it") from exc
        finally:
            timer.cancel()
            cur.close()
