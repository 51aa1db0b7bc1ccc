"""The API server's background ingester: while the server holds the file, it moves staged shards in.

DuckDB lets one process write a file or many read it, never both. While the API runs it is that one
process, so collectors only stage shards next to the warehouse and this thread ingests them, each
group in one short transaction, so a finished batch shows up in the API within about a second.

Folding the write-ahead log into the file (a CHECKPOINT) costs most of a pass on a large file (60-100 ms
of 120-150 on 10 M events, bench/RESULTS.md), so while shards keep landing it runs at most every
`checkpoint_interval_s` and when the server stops. Until then each commit is in the log, which DuckDB
replays when the file is next opened: a killed server loses nothing (tests/warehouse/test_faults.py).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

import duckdb

from api.freshness import DataVersions
from warehouse.ingest import IngestReport, fold_log, ingest_pending

log = logging.getLogger("fsgen.api.ingester")


class BackgroundIngester:
    """Polls the staging folder every `interval_s` seconds (`ApiSettings.ingest_interval_s`), own cursor."""

    def __init__(
        self,
        cursor: Callable[[], duckdb.DuckDBPyConnection],
        warehouse: Path,
        interval_s: float,
        versions: DataVersions | None = None,
        on_error: Callable[[BaseException], object] | None = None,
        checkpoint_interval_s: float = 0.0,
    ) -> None:
        self._cursor = cursor
        self.versions = versions if versions is not None else DataVersions()
        self._on_error = on_error  # the server's Database.note: damage or invalidation shows in /health
        self._warehouse = warehouse
        self._interval = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="fsgen-ingester", daemon=True)
        self.total = IngestReport()
        self._failed_passes = 0  # a failed pass may have committed part of its work
        self._checkpoint_interval = checkpoint_interval_s
        self._unfolded = IngestReport()  # committed since the last checkpoint: in the write-ahead log only
        self._fold_at = 0.0  # monotonic time by which the log is folded

    @property
    def generation(self) -> int:
        """Names the data the file holds: grows with every write this ingester made (or may have made)."""
        return self.total.writes + self._failed_passes

    @property
    def failed_passes(self) -> int:
        """Ingest passes that raised (shards stay staged and are retried)."""
        return self._failed_passes

    def start(self) -> None:
        """Begin polling."""
        self._thread.start()

    def stop(self) -> None:
        """Finish the pass in progress, fold the log into the file, and stop."""
        self._stop.set()
        if self._thread.ident is not None:  # started
            self._thread.join(timeout=30)
        if self._thread.is_alive():
            return
        try:
            self.fold(force=True)
        except Exception:  # e.g. a full disk: the log is kept and replayed when the file is next opened
            log.exception("folding the write-ahead log at shutdown failed; nothing is lost while it is kept")

    def ingest_once(self) -> IngestReport:
        """One pass over the staging folder; the log is folded in when it is due."""
        cur = self._cursor()
        try:
            report = ingest_pending(cur, self._warehouse, checkpoint=False)
        finally:
            cur.close()
        if report.shards and not self._unfolded.shards:
            self._fold_at = time.monotonic() + self._checkpoint_interval
        self._unfolded = self._unfolded + report
        self.total = self.total + report
        self.versions.wrote(report.runs, report.writes, self._cursor)
        if report.shards:
            log.info("ingested %d shard(s), %d events", report.shards, report.events)
        for q in report.quarantined:  # moved aside, so each bad shard is logged once
            log.warning("quarantined %s: %s (see python -m warehouse status)", q.path, q.reason)
        self.fold()
        return report

    def fold(self, force: bool = False) -> None:
        """Fold the write-ahead log into the file when shards were committed since the last time and the
        interval is over (or `force`)."""
        if not self._unfolded.shards or (not force and time.monotonic() < self._fold_at):
            return
        cur = self._cursor()
        try:
            fold_log(cur, self._warehouse, self._unfolded)
        finally:
            cur.close()
        self._unfolded = IngestReport()

    def _loop(self) -> None:
        last_error = ""
        while not self._stop.is_set():
            try:
                self.ingest_once()
                last_error = ""
            except Exception as exc:  # e.g. a full disk: must not stop the server; shards stay staged
                self._failed_passes += 1
                self.versions.failed()
                if self._on_error is not None:
                    self._on_error(exc)
                if repr(exc) != last_error:  # once per distinct failure, not every poll
                    log.exception("ingest pass failed; shards stay staged and are retried")
                last_error = repr(exc)
            self._stop.wait(self._interval)
