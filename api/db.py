"""The API's view of the warehouse: one connection, a cursor per request, SELECT only, under a time limit."""

from __future__ import annotations

import contextlib
import functools
import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable, Hashable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import duckdb

from analytics.scaling import TooFewPoints
from analytics.source import AnalyticsError, latest_experiment_is
from api.cache import ResultCache
from api.errors import ApiError
from api.settings import ApiSettings
from warehouse.db import (
    WarehouseError,
    WarehouseInvalidated,
    WarehouseLocked,
    check_warehouse_file,
    is_lock_error,
    named_damage,
    warehouse_error_of,
)
from warehouse.migrate import require_head

T = TypeVar("T")
log = logging.getLogger("fsgen.api")


class NotASelect(ApiError):
    """A statement the query layer refuses: anything DuckDB's parser does not classify as one SELECT."""

    def __init__(self, message: str) -> None:
        super().__init__(400, "not_a_select", message)


@functools.lru_cache(maxsize=1024)
def require_select(sql: str) -> None:
    """Refuse unless DuckDB's own parser finds exactly one statement and classifies it as SELECT.

    A statement that passed is remembered (the routes' statements are a fixed set of texts with `?` for
    their values): parsing it again cost 0.1-0.3 ms a request. A refusal raises, so it is never kept."""
    try:
        statements = duckdb.extract_statements(sql)
    except duckdb.Error as exc:
        raise NotASelect(f"the statement does not parse: {exc}") from exc
    if len(statements) != 1:
        raise NotASelect(f"one statement per query, got {len(statements)}")
    kind = statements[0].type
    if kind != duckdb.StatementType.SELECT:
        raise NotASelect(f"only SELECT runs here, got {kind.name}")


class Database:
    """One DuckDB connection (external access off, configuration locked); every request gets its own cursor.

    With `ingest` the server holds the file read-write so that its background ingester can move staged
    shards in (DuckDB allows no reader beside a writer in another process); requests still run only
    SELECTs, checked by DuckDB's parser. Without it the file is opened read-only.
    """

    def __init__(
        self,
        path: Path,
        timeout_ms: int,
        ingest: bool = False,
        memory_limit: str | None = None,
        threads: int | None = None,
    ) -> None:
        self.path = path
        self.memory_limit = memory_limit
        self.threads = threads  # per query; None: DuckDB's default (every core)
        self.timeout_ms = timeout_ms
        self.ingest = ingest
        self._con: duckdb.DuckDBPyConnection | None = None
        self._lock = threading.Lock()
        self.problem: WarehouseError | None = None  # damage or invalidation met; /health reports it
        self._last_reopen = 0.0

    @classmethod
    def of(cls, settings: ApiSettings) -> Database:
        """The database a server with these settings reads."""
        return cls(
            settings.warehouse,
            settings.query_timeout_ms,
            ingest=settings.ingest,
            memory_limit=settings.memory_limit,
            threads=settings.query_threads or None,
        )

    def connect(self, wait_s: float = 0.0) -> None:
        """Open on first use; refuses a missing file or one whose schema is behind head.

        A file held by a collector for its short ingest is tried again for up to `wait_s` seconds."""
        deadline = time.monotonic() + wait_s
        while True:
            try:
                return self._connect()
            except WarehouseLocked:
                if time.monotonic() >= deadline:
                    raise
                time.sleep(0.2)

    def _connect(self) -> None:
        with self._lock:
            if self._con is not None:
                return
            if not self.path.exists():
                raise WarehouseError(
                    f"no warehouse at {self.path}; create it with: "
                    f"python -m warehouse upgrade --warehouse {self.path}"
                )
            check_warehouse_file(self.path)
            try:
                with named_damage(self.path):
                    con = duckdb.connect(str(self.path), read_only=not self.ingest, config=self.config())
            except duckdb.IOException as exc:
                if not is_lock_error(exc):
                    raise
                raise WarehouseLocked(f"{self.path} is held by a writer ({exc})") from exc
            check = con.cursor()
            try:
                require_head(check, self.path)
            except WarehouseError:
                con.close()
                raise
            finally:
                check.close()
            self._con = con

    def config(self) -> dict[str, Any]:
        """The DuckDB configuration the file is opened with (DuckDB allows one per file in a process)."""
        config: dict[str, Any] = {"enable_external_access": False, "lock_configuration": True}
        if self.memory_limit:
            config["memory_limit"] = self.memory_limit
        if self.threads:
            config["threads"] = self.threads
        return config

    def cursor(self) -> duckdb.DuckDBPyConnection:
        """A fresh cursor of its own (the shared connection itself never runs a statement)."""
        if isinstance(self.problem, WarehouseInvalidated):
            self.reopen()
            if self.problem is not None:  # not until a write succeeds: 503, never half-working answers
                raise self.problem
        self.connect()
        with self._lock:
            if self._con is None:
                raise WarehouseError(f"{self.path} was closed; restart the server")
            return self._con.cursor()

    @property
    def is_open(self) -> bool:
        """True while the file is open (from the first request, or startup, until `close`)."""
        return self._con is not None

    def close(self) -> None:
        """Release the file."""
        with self._lock:
            if self._con is not None:
                self._con.close()
                self._con = None

    def note(self, exc: BaseException) -> WarehouseError | None:
        """Remember damage or invalidation that a query met, in `exc` or the errors it was raised during
        (None: they name neither)."""
        err: WarehouseError | None = None
        seen: BaseException | None = exc
        while err is None and seen is not None:
            err = warehouse_error_of(seen, self.path)
            seen = seen.__cause__ or seen.__context__
        if isinstance(err, WarehouseInvalidated):
            err = WarehouseInvalidated(f"{err}; this server reopens the file by itself once a write succeeds")
        if err is not None:
            self.problem = err
        return err

    REOPEN_EVERY_S = 1.0

    def reopen(self) -> None:
        """After DuckDB invalidated the database: open the file again, at most once a second, and keep it
        only once a write succeeds (a CHECKPOINT, which replays what the write-ahead log holds)."""
        with self._lock:
            if time.monotonic() - self._last_reopen < self.REOPEN_EVERY_S:
                return
            self._last_reopen = time.monotonic()
            if self._con is not None:
                with contextlib.suppress(duckdb.Error):
                    self._con.close()
                self._con = None
        try:
            self._connect()
            if self.ingest:
                with self._lock:
                    assert self._con is not None
                    self._con.execute("CHECKPOINT")
        except (duckdb.Error, WarehouseError) as exc:
            log.warning("reopening %s failed; trying again: %s", self.path, str(exc).splitlines()[0])
            self.close()
            return
        log.warning("reopened %s after: %s", self.path, self.problem)
        self.problem = None

    def limit_ms(self, timeout_ms: int | None) -> int:
        """The time limit of one request: the server's, or lower when the client asks."""
        return min(timeout_ms or self.timeout_ms, self.timeout_ms)


class Watchdog:
    """One thread that calls each armed action at its time unless disarmed first.

    A `threading.Timer` per query would start a thread per request; this one is started once.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, Callable[[], None]]] = []
        self._pending: set[int] = set()  # armed, neither run nor disarmed
        self._cancelled: set[int] = set()  # disarmed, still in the heap
        self._seq = itertools.count()
        self._thread: threading.Thread | None = None

    def arm(self, after_s: float, action: Callable[[], None]) -> int:
        """Call `action` in `after_s` seconds; returns the ticket that disarms it."""
        ticket = next(self._seq)
        at = time.monotonic() + after_s
        with self._cond:
            self._drop_cancelled()
            # The thread waits until the earliest deadline: it needs waking only for an earlier one (woken
            # for every query, it took the GIL from the query it was timing).
            earlier = not self._heap or at < self._heap[0][0]
            heapq.heappush(self._heap, (at, ticket, action))
            self._pending.add(ticket)
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="fsgen-deadlines", daemon=True)
                self._thread.start()
            if earlier:
                self._cond.notify()
        return ticket

    def disarm(self, ticket: int) -> None:
        """Cancel an action that has not run yet (a no-op once it ran)."""
        with self._cond:
            if ticket in self._pending:
                self._pending.discard(ticket)
                self._cancelled.add(ticket)

    def _drop_cancelled(self) -> None:
        """Pop disarmed deadlines off the top of the heap (under the lock)."""
        while self._heap and self._heap[0][1] in self._cancelled:
            self._cancelled.discard(heapq.heappop(self._heap)[1])

    def _loop(self) -> None:
        while True:
            with self._cond:
                self._drop_cancelled()
                if not self._heap:
                    self._cond.wait()
                    continue
                at, ticket, action = self._heap[0]
                wait = at - time.monotonic()
                if wait > 0:
                    self._cond.wait(wait)
                    continue
                heapq.heappop(self._heap)
                self._pending.discard(ticket)
            try:
                action()
            except Exception:  # e.g. its cursor was closed meanwhile: the next deadline still fires
                log.exception("a deadline action failed")


WATCHDOG = Watchdog()


@contextmanager
def deadline(cur: duckdb.DuckDBPyConnection, limit_ms: int) -> Iterator[None]:
    """Interrupt whatever runs on `cur` past `limit_ms`; answer 503 if it was interrupted."""
    fired = threading.Event()

    def interrupt() -> None:
        fired.set()
        cur.interrupt()

    ticket = WATCHDOG.arm(limit_ms / 1000, interrupt)
    try:
        yield
    except duckdb.InterruptException as exc:
        raise ApiError(503, "query_timeout", f"query ran past {limit_ms} ms; narrow it or page it") from exc
    finally:
        WATCHDOG.disarm(ticket)
    if fired.is_set():
        raise ApiError(503, "query_timeout", f"query ran past {limit_ms} ms; narrow it or page it")


def select(
    cur: duckdb.DuckDBPyConnection, sql: str, params: list[Any] | None = None, limit_ms: int = 5000
) -> list[dict[str, Any]]:
    """Rows of one SELECT as dicts, on the request's own cursor, under its time limit."""
    require_select(sql)
    with deadline(cur, limit_ms):
        rel = cur.execute(sql, params or [])
        names = [d[0] for d in rel.description or []]
        return [dict(zip(names, row, strict=True)) for row in rel.fetchall()]


def analyse(cur: duckdb.DuckDBPyConnection, limit_ms: int, fn: Callable[..., T], *args: Any, **kw: Any) -> T:
    """Call an analytics function on the request's cursor; its user errors become 400s, too few pairs 404."""
    with deadline(cur, limit_ms):
        try:
            return fn(cur, *args, **kw)
        except TooFewPoints as exc:
            raise ApiError(404, "not_enough_data", str(exc)) from exc
        except AnalyticsError as exc:
            raise ApiError(400, exc.code, str(exc)) from exc


@dataclass(frozen=True)
class Analyst:
    """A request's door onto analytics: its own cursor, and the results cache shared by the app."""

    cur: duckdb.DuckDBPyConnection
    cache: ResultCache
    latest: Callable[[], str | None] = lambda: None  # the most recent experiment, as last read

    def __call__(self, limit_ms: int, fn: Callable[..., T], *args: Any, **kw: Any) -> T:
        """`analyse`, answered from the cache when the same call already ran on the same data."""
        key = self.cache.key(fn, args, kw)
        return self._cached(key, lambda: self._analyse(limit_ms, fn, *args, **kw))

    def _analyse(self, limit_ms: int, fn: Callable[..., T], *args: Any, **kw: Any) -> T:
        # The most recent experiment is read after the key's version, so the answer's data are never older
        # than its key says (the cache's rule); a pass landing in between only makes them newer.
        with latest_experiment_is(self.latest()):
            return analyse(self.cur, limit_ms, fn, *args, **kw)

    def rows(
        self,
        sql: str,
        params: list[Any],
        limit_ms: int,
        convert: Callable[[dict[str, Any]], T],
    ) -> list[T]:
        """`select` with each row converted, answered from the cache when the same statement and conversion
        already ran on the same data."""
        key = self.cache.key_of("rows", sql, repr(params), getattr(convert, "__qualname__", repr(convert)))
        return self._cached(key, lambda: [convert(r) for r in select(self.cur, sql, params, limit_ms)])

    def _cached(self, key: Hashable | None, compute: Callable[[], T]) -> T:
        return self.cache.get_or_compute(key, compute)
