"""Dependencies shared by the routes: a cursor per request, settings, the token guard, strict parameters.

Each is `async`: none blocks (a cursor is made and closed in microseconds), and a sync dependency would
cost a hop to the thread pool and back on every request.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import typing
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Generic, NamedTuple, TypeVar

import duckdb
from fastapi import Depends, Header, Query, Request
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import QueryParams

from analytics.source import AnalyticsError, require_experiment
from api.db import Analyst, Database
from api.errors import ApiError
from api.formats import split_commas
from api.freshness import LiveStatuses
from api.settings import ApiSettings

T = TypeVar("T")


async def get_settings(request: Request) -> ApiSettings:
    """The settings the app was built with."""
    settings: ApiSettings = request.app.state.settings
    return settings


async def get_db(request: Request) -> Database:
    """The app's database."""
    db: Database = request.app.state.db
    return db


async def get_cursor(request: Request) -> AsyncIterator[duckdb.DuckDBPyConnection]:
    """A cursor of this request's own, closed when the request is done."""
    db: Database = request.app.state.db
    cur = db.cursor()
    try:
        yield cur
    finally:
        cur.close()


CursorDep = Annotated[duckdb.DuckDBPyConnection, Depends(get_cursor)]


async def get_live(request: Request) -> LiveStatuses:
    """The server's snapshot of which running runs still have a collector."""
    live: LiveStatuses = request.app.state.live
    return live


LiveDep = Annotated[LiveStatuses, Depends(get_live)]


async def known_experiment(request: Request) -> None:
    """A named experiment the warehouse does not hold is a 400 naming the ones it has (a typo would
    otherwise read as an empty experiment). Checked against the runs as the server last read them; a name
    not among them is looked up in the file (its first run may have landed since)."""
    name = request.query_params.get("experiment")
    if name is None or name in request.app.state.versions.experiments:
        return
    db: Database = request.app.state.db

    def look_up() -> None:
        cur = db.cursor()
        try:
            require_experiment(cur, name)
        finally:
            cur.close()

    try:
        await run_in_threadpool(look_up)
    except AnalyticsError as exc:
        raise ApiError(400, "unknown_experiment", str(exc)) from exc


async def get_analyst(request: Request, cur: CursorDep) -> Analyst:
    """This request's door onto analytics (its cursor, the app's results cache)."""
    versions = request.app.state.versions
    return Analyst(cur, request.app.state.cache, lambda: versions.latest)


async def require_token(
    settings: Annotated[ApiSettings, Depends(get_settings)],
    authorization: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> None:
    """When FSGEN_API_TOKEN is set, every /v1 request carries it as a bearer token."""
    expected = f"Bearer {settings.api_token}".encode()
    if settings.api_token and not hmac.compare_digest((authorization or "").encode(), expected):
        raise ApiError(401, "unauthorized", "missing or wrong bearer token (Authorization: Bearer <token>)")


def _is_list(annotation: Any) -> bool:
    """True for list[...] and list[...] | None."""
    if typing.get_origin(annotation) in (list, tuple, set):
        return True
    return any(_is_list(a) for a in typing.get_args(annotation) if a is not type(None))


def query_params(dependant: Dependant) -> dict[str, bool]:
    """Query parameter name -> may repeat, over a route's dependency tree."""
    out = {f.alias: _is_list(f.field_info.annotation) for f in dependant.query_params}
    for sub in dependant.dependencies:
        out |= query_params(sub)
    return out


_ROUTE_PARAMS: dict[int, dict[str, bool]] = {}


async def strict_query(request: Request) -> None:
    """Refuse query parameters the route does not take, and repeats of a single-valued one (400); split
    comma lists of list-valued ones (`group_by=llm,slm` is `group_by=llm&group_by=slm`)."""
    route = request.scope.get("route")
    if not isinstance(route, APIRoute):
        return
    params = _ROUTE_PARAMS.get(id(route))
    if params is None:
        params = _ROUTE_PARAMS.setdefault(id(route), query_params(route.dependant))
    allowed = ", ".join(sorted(params)) or "none"
    for name in dict.fromkeys(request.query_params.keys()):
        if name not in params:
            raise ApiError(
                400, "unknown_parameter", f"unknown parameter {name!r}; this route takes: {allowed}"
            )
        if not params[name] and len(request.query_params.getlist(name)) > 1:
            raise ApiError(
                400, "repeated_parameter", f"parameter {name!r} is given more than once; give it once"
            )
    split = split_commas(request.scope["query_string"], frozenset(k for k, many in params.items() if many))
    if split is not request.scope["query_string"]:
        # Runs first among the route's dependencies, so every later one (and the route) reads the split
        # lists: Starlette keeps the parsed query on the request, FastAPI parses each from it.
        request.scope["query_string"] = split
        request._query_params = QueryParams(split)


INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


def encode_cursor(state: dict[str, int]) -> str:
    """An opaque page cursor."""
    return base64.urlsafe_b64encode(json.dumps(state).encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None, keys: tuple[str, ...]) -> dict[str, int] | None:
    """The integer keys inside a cursor from `encode_cursor`; anything else is a 400."""
    if not cursor:
        return None
    bad = ApiError(400, "invalid_cursor", "the cursor is not one this API issued; start without it")
    try:
        data: Any = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (ValueError, binascii.Error) as exc:
        raise bad from exc
    if not isinstance(data, dict) or set(data) != set(keys):
        raise bad
    if not all(type(data[k]) is int and INT64_MIN <= data[k] <= INT64_MAX for k in keys):
        raise bad  # a key is a DuckDB BIGINT parameter: beyond it DuckDB refuses the query
    return {k: data[k] for k in keys}


class Page(NamedTuple, Generic[T]):
    """One page of rows, the cursor of the next one and whether more rows follow."""

    rows: list[T]
    next_cursor: str | None
    truncated: bool


@dataclass(frozen=True)
class Keyset:
    """Keyset pagination in the order of `columns` (SQL, e.g. `s.sample_id`): a cursor holds the last row's
    values of them under `names`; a query fetches `size + 1` rows to know whether another page follows."""

    names: tuple[str, ...]
    columns: tuple[str, ...]

    @property
    def order_by(self) -> str:
        """The ORDER BY list the pages follow."""
        return ", ".join(self.columns)

    def after(self, cursor: str | None) -> tuple[str, list[object]]:
        """The condition selecting the rows after the cursor's (TRUE without one), and its parameters:
        (a > ?) OR (a = ? AND b > ?) ..., which DuckDB prunes by each column's min/max."""
        last = decode_cursor(cursor, self.names)
        if last is None:
            return "TRUE", []
        values = [last[n] for n in self.names]
        terms = [
            " AND ".join([*(f"{c} = ?" for c in self.columns[:i]), f"{col} > ?"])
            for i, col in enumerate(self.columns)
        ]
        params: list[object] = [v for i in range(len(values)) for v in values[: i + 1]]
        return "(" + " OR ".join(f"({t})" for t in terms) + ")", params

    def page(self, rows: list[T], size: int, key: Callable[[T], Sequence[int]]) -> Page[T]:
        """The first `size` of `rows` (fetched with LIMIT size + 1), with the cursor of the page after."""
        more = len(rows) > size
        rows = rows[:size]
        cursor = encode_cursor(dict(zip(self.names, map(int, key(rows[-1])), strict=True))) if more else None
        return Page(rows, cursor, more)


AnalystDep = Annotated[Analyst, Depends(get_analyst)]
DbDep = Annotated[Database, Depends(get_db)]
SettingsDep = Annotated[ApiSettings, Depends(get_settings)]
TimeoutMs = Annotated[
    int | None, Query(ge=1000, le=3_600_000, description="lower the server's query time limit (ms)")
]
Limit = Annotated[int, Query(ge=1, le=1_000_000, description="rows per page (capped by the server)")]
PageCursor = Annotated[
    str | None,
    Query(
        max_length=200,
        pattern="^[A-Za-z0-9_-]+$",
        description="opaque cursor: the previous page's next_cursor",
    ),
]
