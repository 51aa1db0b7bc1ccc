"""Results kept until the data they read changes: keyed by the version of the runs they read.

While the server runs, its own ingester is the file's only writer (DuckDB lets no other process write
beside it; read-only, nobody writes), so the runs an answer reads and the writes made to each (a run
registered, shards moved in, the run finished) name its data exactly (`api.freshness`). The version is
read before the analysis runs: a write committed meanwhile can only make a stored result newer than its
key says, never older.
"""

from __future__ import annotations

import asyncio
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any, TypeVar

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.freshness import LiveStatuses, Reads, reads_of, reads_of_filters

T = TypeVar("T")


class _Pending:
    """A computation in flight that other requests for the same key wait on."""

    def __init__(self) -> None:
        self.done = threading.Event()
        self.ok = False
        self.value: Any = None


class ResultCache:
    """A thread-safe LRU of analysis results (size 0: off)."""

    def __init__(self, size: int, version: Callable[[Reads], Hashable]) -> None:
        self.size = size
        self.version = version  # of the data a set of run filters reads
        self._items: OrderedDict[Hashable, Any] = OrderedDict()
        self._lock = threading.Lock()
        self._pending: dict[Hashable, _Pending] = {}
        self.hits = 0
        self.misses = 0
        self.joined = 0  # misses answered by a computation another request had already started
        self.shared = 0  # requests answered with the bytes of an identical request in flight

    def key(self, fn: Callable[..., Any], args: tuple[Any, ...], kw: dict[str, Any]) -> Hashable | None:
        """The key of one call (it reads the runs its `filters` select), or None when caching is off."""
        reads = reads_of_filters(kw.get("filters"))
        return self.key_of(fn.__module__, fn.__qualname__, repr(args), repr(sorted(kw.items())), reads=reads)

    def key_of(self, *parts: Hashable, reads: Reads = ()) -> Hashable | None:
        """The key of any value computed from `parts` and the runs `reads` selects (every run: ()), or
        None when caching is off."""
        if self.size <= 0:
            return None
        return (self.version(reads), *parts)

    def snapshot(self) -> list[Hashable]:
        """The keys held now, least recently used first."""
        with self._lock:
            return list(self._items)

    def get(self, key: Hashable) -> tuple[bool, Any]:
        """(found, value)."""
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                self.hits += 1
                return True, self._items[key]
            self.misses += 1
            return False, None

    def get_or_compute(self, key: Hashable | None, compute: Callable[[], T]) -> T:
        """The stored value of `key`, else `compute()` stored under it; concurrent misses of one key
        compute once (after an ingest, 16 clients asking one route wait for one analysis, not 16)."""
        if key is None:
            return compute()
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                self.hits += 1
                return self._items[key]  # type: ignore[no-any-return]
            self.misses += 1
            pending = self._pending.get(key)
            owner = pending is None
            if pending is None:
                pending = self._pending[key] = _Pending()
        if not owner:
            pending.done.wait()
            if pending.ok:
                with self._lock:
                    self.joined += 1
                return pending.value  # type: ignore[no-any-return]
            return compute()  # the first one failed (e.g. its own time limit): try on our own
        try:
            pending.value = compute()
            pending.ok = True
            self.put(key, pending.value)
            return pending.value  # type: ignore[no-any-return]
        finally:
            with self._lock:
                self._pending.pop(key, None)
            pending.done.set()

    def count_shared(self) -> None:
        """One request answered with the bytes of an identical one in flight."""
        with self._lock:
            self.shared += 1

    def put(self, key: Hashable, value: Any) -> None:
        """Store a result, dropping the least recently used beyond `size`."""
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.size:
                self._items.popitem(last=False)


# Row listings of runs carry each running run's liveness (its collector's heartbeat), which changes without
# any ingest: their key also holds the liveness snapshot (`api.freshness.LiveStatuses`). Every other /v1 GET
# answers from the warehouse's data alone.
_LIVE_PATHS = re.compile(r"^/v1/runs(/[0-9]+)?/?$")
MAX_CACHED_BODY = 1 << 20  # larger answers (and every streamed download) pass through, never stored
# What the data and the request decide: an answer, or "not there" (no such run, too few pairs to fit).
# Errors of the server (500, 503 past a time limit) are never kept.
KEPT_STATUSES = (200, 404)
Entry = tuple[int, list[tuple[bytes, bytes]], bytes]  # a kept answer: status, headers, body


def cacheable(path: str) -> bool:
    """True for the /v1 routes whose answer is a function of the data and the request (run listings: and
    the liveness snapshot)."""
    return path.startswith("/v1/")


class ResponseCacheMiddleware:
    """Answers a repeated GET from the answer it produced on the same data, without routing it again.

    The key is the version of the runs the request reads (`reads_of`, read before the app runs), the path,
    the raw query string and the Authorization header: the same request on the same data gets the same
    bytes. Identical requests that miss together are routed once: the others wait (on the event loop, no
    thread held) and send its bytes. After an ingest makes an answer new, 64 clients asking for it cost
    one analysis and one response, not 64 responses built in turn. Anything but a whole 200 or 404 of at
    most MAX_CACHED_BODY bytes passes through unstored, and a request that waited on it is routed itself.
    """

    def __init__(self, app: ASGIApp, cache: ResultCache, live: LiveStatuses) -> None:
        self.app = app
        self.cache = cache
        self.live = live
        self._in_flight: dict[Hashable, asyncio.Future[Entry | None]] = {}  # the event loop's alone

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "GET" or not cacheable(scope["path"]):
            await self.app(scope, receive, send)
            return
        auth = next((v for k, v in scope["headers"] if k == b"authorization"), b"")
        path, query = scope["path"], scope["query_string"]
        live: Hashable = ()
        if _LIVE_PATHS.match(path) is not None:
            snapshot = self.live.snapshot()
            if snapshot is None:  # the runs not read yet: each request reads the liveness itself
                await self.app(scope, receive, send)
                return
            live = snapshot[1]
        key = self.cache.key_of("response", path, query, auth, live, reads=reads_of(path, query))
        if key is None:
            await self.app(scope, receive, send)
            return
        found, stored = self.cache.get(key)
        if not found:
            running = self._in_flight.get(key)
            if running is None:
                await self._route(key, scope, receive, send)
                return
            stored = await asyncio.shield(running)
            if stored is None:  # not an answer to keep (an error, a stream): route this one too
                await self.app(scope, receive, send)
                return
            self.cache.count_shared()
        status, headers, body = stored
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def _route(self, key: Hashable, scope: Scope, receive: Receive, send: Send) -> None:
        """Route one request, storing its answer under `key` and handing it to identical requests."""
        running: asyncio.Future[Entry | None] = asyncio.get_running_loop().create_future()
        self._in_flight[key] = running
        start: dict[str, Any] = {}
        parts: list[bytes] = []
        keep = True
        entry: Entry | None = None

        async def capture(message: Message) -> None:
            nonlocal keep, entry
            if message["type"] == "http.response.start":
                start.update(message)
                keep = message["status"] in KEPT_STATUSES
            elif message["type"] == "http.response.body" and keep:
                parts.append(message.get("body", b""))
                keep = not message.get("more_body", False) and sum(map(len, parts)) <= MAX_CACHED_BODY
                if keep:
                    entry = (start["status"], list(start.get("headers", [])), b"".join(parts))
                    self.cache.put(key, entry)
            await send(message)

        try:
            await self.app(scope, receive, capture)
        finally:
            del self._in_flight[key]
            running.set_result(entry)
