"""What a request may say in its query string beyond a route's own parameters: lists and output format.

- Comma lists: a list parameter takes `group_by=llm,slm` as well as `group_by=llm&group_by=slm` (and
  both mixed). `api.deps.strict_query`, the first dependency of every route, splits the commas of the
  route's list parameters (`split_commas`) before the route reads them, so each route's parameters stay
  what its signature says.
- `?format=csv` on the aggregate routes: the same answer as CSV. The JSON answer's row lists become rows
  (a row's `group` spread into its own columns, a nested list as JSON text); an answer with more than one
  row list (e.g. /v1/speculative's `runs` and `acceptance`) gets a first column `part` naming the list.
"""

from __future__ import annotations

import csv
import io
import json
from enum import Enum
from typing import Annotated, Any, Literal
from urllib.parse import parse_qsl, urlencode

from fastapi import APIRouter, Depends, Query
from starlette.types import ASGIApp, Message, Receive, Scope, Send

OutputFormat = Literal["json", "csv"]
CSV_MEDIA = "text/csv; charset=utf-8"
CSV_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/csv": {"schema": {"type": "string"}}}, "description": "JSON, or CSV with format"}
}


def aggregate_router(prefix: str, tags: list[str | Enum]) -> APIRouter:
    """The router of an aggregate resource: its routes also answer `?format=csv`."""
    return APIRouter(prefix=prefix, tags=tags, dependencies=[Depends(output_format)], responses=CSV_RESPONSES)


async def output_format(
    format: Annotated[OutputFormat, Query(description="json, or csv: the answer's rows as CSV")] = "json",
) -> OutputFormat:
    """The format an aggregate answers in (the conversion itself is `CsvMiddleware`'s)."""
    return format


def split_commas(query: bytes, names: frozenset[str]) -> bytes:
    """The query string with every value of a `names` parameter split at its commas (unchanged if none)."""
    pairs = parse_qsl(query.decode("latin-1"), keep_blank_values=True)
    if not any(k in names and "," in v for k, v in pairs):
        return query
    split = [(k, part) for k, v in pairs for part in (v.split(",") if k in names else [v])]
    return urlencode(split).encode("latin-1")


def _cell(value: Any) -> Any:
    return json.dumps(value) if isinstance(value, (list, dict)) else value


def _flat(row: dict[str, Any]) -> dict[str, Any]:
    given = row.get("group")
    group: dict[str, Any] = given if isinstance(given, dict) else {}
    rest = {k: _cell(v) for k, v in row.items() if k != "group"}
    return {**{k: _cell(v) for k, v in group.items()}, **rest}


def rows_of(payload: Any) -> list[dict[str, Any]]:
    """The rows of a JSON answer (see the module docstring)."""
    if isinstance(payload, list):
        return [_flat(r) if isinstance(r, dict) else {"value": _cell(r)} for r in payload]
    if not isinstance(payload, dict):
        return [{"value": payload}]
    parts = {k: v for k, v in payload.items() if isinstance(v, list) and v and isinstance(v[0], dict)}
    if not parts:
        return [{k: _cell(v) for k, v in payload.items()}]
    if len(parts) == 1:
        return [_flat(r) for r in next(iter(parts.values()))]
    return [{"part": name, **_flat(r)} for name, rows in parts.items() for r in rows]


def to_csv(payload: Any) -> str:
    """A JSON answer as CSV text, columns in first-seen order."""
    rows = rows_of(payload)
    columns = list(dict.fromkeys(k for r in rows for k in r))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def _wants_csv(scope: Scope) -> bool:
    return ("format", "csv") in parse_qsl(scope.get("query_string", b"").decode("latin-1"))


class CsvMiddleware:
    """Turns a 200 JSON answer of a request that asked `format=csv` into CSV (a route that does not take
    `format` has refused it with a 400 by then, which passes through as it is)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not _wants_csv(scope):
            await self.app(scope, receive, send)
            return
        start: dict[str, Any] = {}
        parts: list[bytes] = []

        async def capture(message: Message) -> None:
            if message["type"] == "http.response.start":
                start.update(message)
                if message["status"] != 200:
                    await send(message)
                return
            if start.get("status") != 200:
                await send(message)
                return
            parts.append(message.get("body", b""))
            if message.get("more_body", False):
                return
            body = to_csv(json.loads(b"".join(parts))).encode()
            headers = [
                (k, v) for k, v in start.get("headers", []) if k not in (b"content-type", b"content-length")
            ]
            headers += [(b"content-type", CSV_MEDIA.encode()), (b"content-length", str(len(body)).encode())]
            await send({**start, "headers": headers})
            await send({"type": "http.response.body", "body": body})

        await self.app(scope, receive, capture)
