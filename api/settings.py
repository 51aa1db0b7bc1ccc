"""API settings (`FSGEN_` environment prefix); built in the entry point and passed to `create_app`."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from warehouse.settings import DEFAULT_WAREHOUSE


class ApiSettings(BaseSettings):
    """Where the warehouse is, how to serve it, and the limits every query runs under."""

    model_config = SettingsConfigDict(env_prefix="FSGEN_", extra="ignore")

    warehouse: Path = DEFAULT_WAREHOUSE
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    api_token: str | None = None  # FSGEN_API_TOKEN: when set, every /v1 request needs `Bearer <token>`
    cors_origins: list[str] = []  # FSGEN_CORS_ORIGINS='["http://localhost:3000"]'; empty = CORS off
    # a client may lower it with ?timeout_ms=, never raise it
    query_timeout_ms: int = Field(default=5000, ge=1)
    max_rows: int = Field(default=1000, ge=1)  # hard cap on any page
    ingest: bool = True  # hold the file and ingest staged shards in the background (else read-only)
    ingest_interval_s: float = Field(default=0.5, gt=0, allow_inf_nan=False)
    # FSGEN_CHECKPOINT_INTERVAL_S: while shards keep landing, the write-ahead log is folded into the file at
    # most this often (a CHECKPOINT costs most of a pass on a large file); 0: after every pass
    checkpoint_interval_s: float = Field(default=10.0, ge=0, allow_inf_nan=False)
    # a collector holds the file for its short ingests: startup waits this long for it before giving up
    startup_wait_s: float = Field(default=10.0, ge=0, allow_inf_nan=False)
    # a request's headers must arrive within this
    header_timeout_s: float = Field(default=10.0, gt=0, allow_inf_nan=False)
    # idle keep-alive; uvicorn's 5 s races clients that reuse a connection late
    keep_alive_s: int = Field(default=75, ge=1)
    memory_limit: str | None = (
        None  # DuckDB's memory_limit for the server (e.g. '1GB'); None: DuckDB's default
    )
    # FSGEN_WORKER_THREADS: requests computed at once (cached answers don't count)
    worker_threads: int = Field(default=4, ge=1, le=256)
    # FSGEN_QUERY_THREADS: DuckDB threads per query; 0: DuckDB's default (every core). On two cores, 1 and 2
    # served 16 clients alike (bench/RESULTS.md)
    query_threads: int = Field(default=0, ge=0, le=1024)

    # FSGEN_ACCESS_LOG: a line on stdout per request; off by default, since formatting it cost more CPU than
    # answering from the cache (17,000 against 9,600 cached answers a second at 64 clients, bench/RESULTS.md).
    # Counts and latencies per route are always in /metrics.
    access_log: bool = False

    cache_size: int = Field(
        default=256, ge=0
    )  # analysis results kept until the ingester moves a shard in (0: off)
