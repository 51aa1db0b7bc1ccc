"""GET /v1/runs/{run_id}/events: raw token events in cursor pages, or the whole run as NDJSON or Parquet."""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Annotated, Any, Literal

import duckdb
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
from fastapi import APIRouter, Query
from fastapi.responses import StreamingResponse
from pydantic import create_model

from api.convert import list_of, table_model
from api.db import Database, require_select, select
from api.deps import CursorDep, DbDep, Keyset, Limit, PageCursor, SettingsDep, TimeoutMs
from api.errors import error_responses
from api.routes.runs import RunId, require_run

router = APIRouter(prefix="/v1", tags=["events"])
BATCH_ROWS = 65_536  # rows per streamed batch: the server holds about one batch of a download at a time
MEDIA = {"ndjson": "application/x-ndjson", "parquet": "application/vnd.apache.parquet"}


EventPublic: Any = table_model(
    "token_events", "EventPublic", "One generated token of one sample (the `token_events` row)."
)


EventsPublic: Any = create_model(
    "EventsPublic",
    __doc__="A page of events in (sample_id, step) order; `next_cursor` fetches the next one.",
    data=(list_of(EventPublic), ...),
    next_cursor=(str | None, ...),
    truncated=(bool, ...),
)


COLUMNS = ", ".join(EventPublic.model_fields)
EVENT_PAGES = Keyset(("sample_id", "step"), ("sample_id", "step"))
ORDERED = f"SELECT {COLUMNS} FROM token_events WHERE run_id = ? ORDER BY {EVENT_PAGES.order_by}"
CHUNK = (
    f"SELECT {COLUMNS} FROM token_events WHERE run_id = ? AND sample_id BETWEEN ? AND ? "
    f"ORDER BY {EVENT_PAGES.order_by}"
)
Format = Literal["json", "ndjson", "parquet"]
DOWNLOADS: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "A page of events (JSON), or the whole run as NDJSON or Parquet with `format`",
        "content": {
            MEDIA["ndjson"]: {"schema": {"type": "string"}},
            MEDIA["parquet"]: {"schema": {"type": "string", "format": "binary"}},
        },
    },
    **error_responses(400, 401, 404, 405, 500, 503),
}


class _Chunks(io.RawIOBase):
    """A write-only sink that hands back what was written since the last `take` (for streaming Parquet)."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []
        self._pos = 0

    def writable(self) -> bool:
        return True

    def write(self, b: Any) -> int:
        data = bytes(b)
        self._parts.append(data)
        self._pos += len(data)
        return len(data)

    def tell(self) -> int:
        return self._pos

    def take(self) -> bytes:
        out = b"".join(self._parts)
        self._parts.clear()
        return out


def sample_chunks(sizes: list[tuple[int, int]], rows: int = BATCH_ROWS) -> list[tuple[int, int]]:
    """Consecutive (first, last) sample ids whose events add up to about `rows` (a sample is never split)."""
    chunks: list[tuple[int, int]] = []
    first, total = None, 0
    for sample_id, tokens in sizes:
        if first is None:
            first = sample_id
        total += tokens
        if total >= rows:
            chunks.append((first, sample_id))
            first, total = None, 0
    if first is not None:
        chunks.append((first, sizes[-1][0]))
    return chunks


def _batches(db: Database, run_id: int) -> Iterator[pa.RecordBatch]:
    """The run's events in order, a chunk of samples at a time (each sorted alone: memory stays bounded)."""
    require_select(CHUNK)
    cur: duckdb.DuckDBPyConnection = db.cursor()
    try:
        sizes = cur.execute(
            "SELECT sample_id, tokens FROM sample_sums WHERE run_id = ? ORDER BY sample_id", [run_id]
        ).fetchall()
        for first, last in sample_chunks([(int(s), int(t)) for s, t in sizes]):
            reader: pa.RecordBatchReader = cur.sql(CHUNK, params=[run_id, first, last]).to_arrow_reader(
                BATCH_ROWS
            )
            yield from reader
    finally:
        cur.close()


def ndjson_stream(db: Database, run_id: int) -> Iterator[bytes]:
    """The run's events as newline-delimited JSON."""
    for batch in _batches(db, run_id):
        frame = pl.from_arrow(batch)
        assert isinstance(frame, pl.DataFrame)
        yield frame.write_ndjson().encode()


def parquet_stream(db: Database, run_id: int) -> Iterator[bytes]:
    """The run's events as one Parquet file, a row group per batch, written as it is read."""
    sink = _Chunks()
    writer: pq.ParquetWriter | None = None
    for batch in _batches(db, run_id):
        if writer is None:
            writer = pq.ParquetWriter(sink, batch.schema, compression="zstd")
        writer.write_batch(batch)
        yield sink.take()
    if writer is None:  # no events: still a valid, empty file
        empty = select_schema(db)
        writer = pq.ParquetWriter(sink, empty, compression="zstd")
    writer.close()
    yield sink.take()


def select_schema(db: Database) -> pa.Schema:
    """The Arrow schema of the events query (for an empty download)."""
    cur = db.cursor()
    try:
        table: pa.Table = cur.execute(f"{ORDERED} LIMIT 0", [-1]).to_arrow_table()
        return table.schema
    finally:
        cur.close()


@router.get("/runs/{run_id}/events", response_model=EventsPublic, responses=DOWNLOADS)
def list_events(
    run_id: RunId,
    cur: CursorDep,
    db: DbDep,
    settings: SettingsDep,
    format: Annotated[Format, Query(description="json: a page; ndjson / parquet: the whole run")] = "json",
    limit: Limit = 1000,
    cursor: PageCursor = None,
    timeout_ms: TimeoutMs = None,
) -> Any:
    """Raw events of a run: JSON pages, or the whole run streamed (bounded server memory)."""
    limit_ms = db.limit_ms(timeout_ms)
    require_run(cur, run_id, limit_ms)
    if format != "json":
        stream = ndjson_stream(db, run_id) if format == "ndjson" else parquet_stream(db, run_id)
        name = f"run-{run_id}-events.{format}"
        headers = {"Content-Disposition": f'attachment; filename="{name}"'}
        return StreamingResponse(stream, media_type=MEDIA[format], headers=headers)
    after, params = EVENT_PAGES.after(cursor)
    page = min(limit, settings.max_rows)
    rows = select(
        cur,
        f"SELECT {COLUMNS} FROM token_events WHERE run_id = ? AND {after} ORDER BY {EVENT_PAGES.order_by} "
        "LIMIT ?",
        [run_id, *params, page + 1],
        limit_ms,
    )
    shown = EVENT_PAGES.page(rows, page, lambda r: (r["sample_id"], r["step"]))
    data = [EventPublic(**r) for r in shown.rows]
    return EventsPublic(data=data, next_cursor=shown.next_cursor, truncated=shown.truncated)
