"""`python -m api`: serve the warehouse read-only over HTTP (uvicorn)."""

from __future__ import annotations

import sys

import uvicorn
from pydantic import ValidationError

from api.app import create_app
from api.db import Database
from api.settings import ApiSettings
from api.slow_clients import header_timeout_protocol
from warehouse.db import WarehouseError, WarehouseLocked
from warehouse.settings import add_warehouse_argument, command_parser

EXAMPLES = """examples:
  python -m api                                     # ./fsgen.duckdb on http://127.0.0.1:8000
  python -m api --warehouse runs.duckdb --port 8080
  FSGEN_API_TOKEN=secret python -m api              # every /v1 request needs 'Authorization: Bearer secret'
  python -m api --access-log                        # a line per request on stdout
  curl 'http://127.0.0.1:8000/v1/cof?group_by=method'
"""


def _connect(db: Database, wait_s: float) -> None:
    """Open the file; while another process holds it (a collector's short ingest), say so and wait."""
    try:
        db.connect()
    except WarehouseLocked:
        print(f"{db.path} is held by another process; waiting up to {wait_s:g} s", file=sys.stderr)
        db.connect(wait_s=wait_s)


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    parser = command_parser("python -m api", "Read-only REST API over an fsgen warehouse.", EXAMPLES)
    add_warehouse_argument(parser)
    parser.add_argument("--host", help="bind address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port (default 8000)")
    parser.add_argument(
        "--read-only",
        dest="ingest",
        action="store_false",
        default=None,
        help="open the file read-only and ingest nothing (collectors then only stage their shards)",
    )
    parser.add_argument(
        "--access-log",
        action="store_true",
        default=None,
        help="log a line per request on stdout (default off: FSGEN_ACCESS_LOG; /metrics counts them)",
    )
    args = parser.parse_args(argv)
    overrides = {k: v for k, v in vars(args).items() if v is not None}
    try:
        settings = ApiSettings(**overrides)
    except ValidationError as exc:
        flags = {a.dest: a.option_strings[0] for a in parser._actions if a.option_strings}
        for err in exc.errors():
            field = "_".join(str(p) for p in err["loc"])
            name = flags[field] if field in overrides else f"FSGEN_{field.upper()}"
            print(f"error: {name}={err.get('input')!r}: {err['msg']}", file=sys.stderr)
        return 2
    db = Database.of(settings)
    try:  # opened here and kept: a collector cannot take the file between a probe and the server's start
        _connect(db, settings.startup_wait_s)
    except WarehouseLocked as exc:
        wait = f"{settings.startup_wait_s:g} s"
        print(f"error: {exc}; it stayed held for {wait} (a collector ingesting, or another server): try "
              "again once it is done, or wait longer with FSGEN_STARTUP_WAIT_S", file=sys.stderr)  # fmt: skip
        return 2
    except WarehouseError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    uvicorn.run(
        create_app(settings, db),
        host=settings.host,
        port=settings.port,
        log_level="info",
        access_log=settings.access_log,
        timeout_keep_alive=settings.keep_alive_s,
        http=header_timeout_protocol(settings.header_timeout_s),
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
