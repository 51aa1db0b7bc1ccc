"""Freshness by what an answer reads: the version of the runs an answer reads, for the cache's keys.

While the server runs, its own ingester is the file's only writer, and it says which runs each pass
wrote (a run registered, shards moved in, the run finished). So the data an answer reads is named by the
runs it reads and each one's count of writes: an answer about complete runs stays valid while shards of
another run land; a run's own answers change when that run's data change; a run registered or finished
changes the answers whose filters then select another set of runs.

Which runs an answer reads is decided from the request alone: the run of a `/v1/runs/{id}/...` path, else
the runs selected by the query's run filters (`api.params.run_filters`, matched against the `runs` rows as
stored), else every run. A filter on a column the `runs` rows lack reads every run (never too few). An
aggregate answer that names no experiment reads the most recent one (analytics' default scope), so it is
versioned by that experiment's runs: a run registered in a newer experiment makes it new.
"""

from __future__ import annotations

import inspect
import re
import threading
import time
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import duckdb

from analytics.source import LATEST_EXPERIMENT
from api.params import run_filters
from warehouse.liveness import displayed_status

# The query parameters that select runs (one definition: the shared filter dependency's own parameters).
FILTER_PARAMS: tuple[str, ...] = tuple(inspect.signature(run_filters).parameters)
# Parameters that only narrow the runs the others select (leaving them out reads no fewer runs).
NARROWING = ("baselines",)
# Routes that read one experiment (analytics' scope): without `experiment` they read the most recent one.
SCOPED = ("/v1/cof", "/v1/scaling", "/v1/uncertainty", "/v1/positions", "/v1/speculative")
LATEST = "\0latest"  # stands for the most recent experiment until the version is taken
_RUN_PATH = re.compile(r"^/v1/runs/([0-9]+)/")

MEMO_SIZE = 4096  # distinct filter sets whose version is kept for the current generation
Reads = tuple[tuple[str, tuple[str, ...]], ...]  # (filter, accepted values) pairs; () = every run


def reads_of(path: str, query: str | bytes) -> Reads:
    """The runs a GET reads, as filters: its path's run, else its run filters (repeated or comma lists)."""
    run = _RUN_PATH.match(path)
    if run:
        return (("run_id", (run.group(1),)),)
    if isinstance(query, bytes):
        query = query.decode("latin-1")
    given: dict[str, list[str]] = {}
    for name, value in parse_qsl(query, keep_blank_values=True):
        if name in FILTER_PARAMS:
            given.setdefault(name, []).extend(v for v in value.split(",") if v)
    if path.startswith(SCOPED) and not given.keys() & {"experiment", "run_id"}:
        given["experiment"] = [LATEST]
    return tuple(sorted((k, tuple(sorted(set(v)))) for k, v in given.items()))


def reads_of_filters(filters: Mapping[str, Any] | None) -> Reads:
    """`reads_of` for an analytics call's `filters` mapping (a list means IN; no experiment: the latest)."""
    if not filters:
        return ()
    out: list[tuple[str, tuple[str, ...]]] = []
    if not filters.keys() & {"experiment", "run_id"}:
        out.append(("experiment", (LATEST,)))
    for name, value in filters.items():
        if value is None:  # no restriction (the scope's keys), or IS NULL: every run, never too few
            return ()
        values = value if isinstance(value, Sequence) and not isinstance(value, str) else [value]
        out.append((name, tuple(sorted({str(v) for v in values}))))
    return tuple(sorted(out))


@dataclass(frozen=True)
class _State:
    generation: int  # every write, and every failed pass: the version of "every run"
    writes: Mapping[int, int] = field(default_factory=dict)  # run_id -> writes to it so far
    runs: Mapping[int, Mapping[str, str]] | None = None  # run_id -> its runs row as text; None: not loaded
    latest: str | None = None  # the default scope's experiment (`LATEST_EXPERIMENT`), read with `runs`
    experiments: frozenset[str] = frozenset()  # every experiment of `runs`
    running: tuple[tuple[int, str], ...] = ()  # (run_id, run_key) of the runs stored as `running`


class DataVersions:
    """Per-run write counts of the server's ingester and the runs' rows; `version(reads)` names the data."""

    def __init__(self) -> None:
        self._state = _State(0)
        self._lock = threading.Lock()  # one writer (the ingester thread); readers take the state whole
        self._memo: dict[Reads, tuple[int, Hashable]] = {}

    @property
    def generation(self) -> int:
        """Grows with every write (the version of an answer that reads every run)."""
        return self._state.generation

    def wrote(
        self, runs: Sequence[int], writes: int, cursor: Callable[[], duckdb.DuckDBPyConnection]
    ) -> None:
        """After an ingest pass: `writes` writes to `runs`; the runs' rows are read again when any changed."""
        if not writes and self._state.runs is not None:
            return
        with self._lock:
            old = self._state
            counts = dict(old.writes)
            for run_id in runs:
                counts[run_id] = counts.get(run_id, 0) + 1
            self._state = _State(old.generation + writes, counts, *_load_runs(cursor))

    def load(self, cursor: Callable[[], duckdb.DuckDBPyConnection]) -> None:
        """Read the runs now (at startup: a read-only server's data never change, so it is read once)."""
        with self._lock:
            old = self._state
            self._state = _State(old.generation, old.writes, *_load_runs(cursor))

    def failed(self) -> None:
        """A failed pass may have written any run: every answer is new."""
        with self._lock:
            old = self._state
            self._state = _State(old.generation + 1, {k: v + 1 for k, v in old.writes.items()}, None)

    @property
    def experiments(self) -> frozenset[str]:
        """The experiments of the runs as of the last pass (empty: not read yet)."""
        return self._state.experiments

    @property
    def running(self) -> tuple[tuple[int, str], ...] | None:
        """(run_id, run_key) of the runs stored as `running` as of the last pass; None: not read yet."""
        state = self._state
        return None if state.runs is None else state.running

    @property
    def latest(self) -> str | None:
        """The most recent experiment as of the last pass (None: not read yet, or no run in scope); an
        analysis run after taking a version reads data at least as new as the version names."""
        return self._state.latest

    def version(self, reads: Reads) -> Hashable:
        """The version of the data `reads` selects: the selected runs and their write counts."""
        state = self._state
        if state.runs is not None and ("experiment", (LATEST,)) in reads:
            latest = ("experiment", (state.latest or "",))
            reads = tuple(latest if r == ("experiment", (LATEST,)) else r for r in reads)
        if not reads or state.runs is None:
            return ("all", state.generation)
        memo = self._memo.get(reads)
        if memo is not None and memo[0] == state.generation:
            return memo[1]
        selected = _select(state.runs, reads)
        if selected is None:
            version: Hashable = ("all", state.generation)
        else:
            ids = tuple(sorted(selected))
            version = (ids, sum(state.writes.get(i, 0) for i in ids))  # counts only grow: the sum names them
        if len(self._memo) > MEMO_SIZE:
            self._memo.clear()
        self._memo[reads] = (state.generation, version)
        return version


def _select(runs: Mapping[int, Mapping[str, str]], reads: Reads) -> set[int] | None:
    """Ids of the runs (known or not yet registered) the filters select; None when a filter's column is
    not a runs column."""
    selected: set[int] | None = None
    for name, values in reads:
        if name in NARROWING:
            continue
        if name == "run_id":
            ids = {int(v) for v in values if v.isdigit()}
        elif runs and name not in next(iter(runs.values())):
            return None
        else:
            ids = {i for i, row in runs.items() if row.get(name) in values}
        selected = ids if selected is None else selected & ids
    return selected  # None: only narrowing filters, so every run


def _load_runs(
    cursor: Callable[[], duckdb.DuckDBPyConnection],
) -> tuple[dict[int, dict[str, str]], str | None, frozenset[str], tuple[tuple[int, str], ...]]:
    """The runs rows as text, the most recent experiment, every experiment and the runs stored as running,
    read in one transaction."""
    cur = cursor()
    try:
        cur.begin()
        result = cur.execute("SELECT * FROM runs")
        names = [d[0] for d in result.description]
        rows = result.fetchall()
        (latest,) = cur.execute(f"SELECT {LATEST_EXPERIMENT}").fetchall()[0]
        cur.rollback()
    finally:
        cur.close()
    key, name = names.index("run_id"), names.index("experiment")
    runs = {int(r[key]): {n: str(v) for n, v in zip(names, r, strict=True)} for r in rows}
    running = tuple((i, r["run_key"]) for i, r in runs.items() if r["status"] == "running")
    return runs, latest, frozenset(r[name] for r in rows), running


class LiveStatuses:
    """The status shown for each run stored as `running` (`stale` once its collector is gone: its heartbeat,
    `warehouse.liveness`), read at most every `ttl_s` seconds and whenever the runs change. A run listing is
    then a function of the data and this snapshot, so it is cached like any answer; a collector writes its
    heartbeat seconds apart, so a snapshot a second old shows what a fresh read would."""

    def __init__(self, warehouse: Path, versions: DataVersions, ttl_s: float = 1.0) -> None:
        self._warehouse = warehouse
        self._versions = versions
        self._ttl = ttl_s
        # (read until, the running runs it was read for, run_id -> status, the key part naming them)
        self._held: tuple[float, tuple[tuple[int, str], ...], Mapping[int, str], Hashable] | None = None

    def snapshot(self) -> tuple[Mapping[int, str], Hashable] | None:
        """The statuses of the running runs and a key part naming them; None before the runs are read."""
        running = self._versions.running
        if running is None:
            return None
        held, now = self._held, time.monotonic()
        if held is None or now >= held[0] or held[1] is not running:
            statuses = {i: displayed_status(self._warehouse, key, "running", i) for i, key in running}
            held = self._held = (now + self._ttl, running, statuses, tuple(sorted(statuses.items())))
        return held[2], held[3]
