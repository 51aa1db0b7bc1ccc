"""Is a `running` run still being collected? Its staging folder's heartbeat (PID, host, time) tells.

A collector rewrites `heartbeat.json` when it starts a run and after every shard. A run is **stale** when
its collector is gone: on this host, its PID is not alive (or is another process now); on another host,
where a PID cannot be checked, no heartbeat for `STALE_AFTER_S`. A stale run is continued with `--resume`.
"""

from __future__ import annotations

import json
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path

from warehouse.settings import staging_dir
from warehouse.staging import ENDED, FINAL, HEARTBEAT, MANIFEST, pid_start

STALE_AFTER_S = 900.0  # another host's collector: this long without a heartbeat counts as dead


@dataclass(frozen=True)
class RunLiveness:
    """What the staging folder says about a run's collector."""

    state: str  # live | stale | finishing (its final record waits for ingest) | failed (kept for --resume)
    detail: str  # who and when, for people
    resume: str  # the command that continues the run
    pid: int | None = None  # the collector's process id, where the heartbeat names one


def pid_alive(pid: int, start: str | None) -> bool:
    """True if a process `pid` runs here (and, when `start` is known, is the same one, not a reused PID)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # alive, owned by someone else
    return start is None or pid_start(pid) in (start, None)


def _resume_command(warehouse: Path, ref: str) -> str:
    return f"python -m collector.run --resume {ref} --warehouse {warehouse}"


def run_liveness(
    warehouse: Path, run_key: str, run_id: int | None = None, *, now: float | None = None
) -> RunLiveness:
    """The liveness of a run that the warehouse lists as `running`."""
    run_dir = staging_dir(warehouse) / run_key
    now = time.time() if now is None else now
    if not (run_dir / MANIFEST).exists():
        ref = str(run_id) if run_id is not None else run_key
        return RunLiveness("stale", f"its staging folder {run_dir} is gone", _resume_command(warehouse, ref))
    resume = _resume_command(warehouse, run_key)  # by key: works even while another process holds the file
    if (run_dir / FINAL).exists():
        return RunLiveness("finishing", "its collector has finished; the last shards await ingest", resume)
    if (run_dir / ENDED).exists():
        return RunLiveness("failed", "it ended failed; its staging folder is kept for --resume", resume)
    try:
        beat = json.loads((run_dir / HEARTBEAT).read_text())
        pid, host, at, start = int(beat["pid"]), str(beat["host"]), float(beat["at"]), beat.get("pid_start")
    except (OSError, ValueError, KeyError, TypeError):
        at = max(p.stat().st_mtime for p in run_dir.iterdir())
        age = now - at
        state = "stale" if age > STALE_AFTER_S else "live"
        return RunLiveness(state, f"no heartbeat; last written {age:.0f} s ago", resume)
    age = now - at
    who = f"PID {pid} on {host}, last heartbeat {age:.0f} s ago"
    if host == socket.gethostname():
        alive = pid_alive(pid, start)
        return RunLiveness(
            "live" if alive else "stale", who + ("" if alive else "; that process is gone"), resume, pid
        )
    return RunLiveness("stale" if age > STALE_AFTER_S else "live", who, resume)


def displayed_status(warehouse: Path, run_key: str, status: str, run_id: int | None = None) -> str:
    """A run's status as people should see it: a `running` run whose collector is gone is `stale`."""
    if status != "running":
        return status
    return "stale" if run_liveness(warehouse, run_key, run_id).state == "stale" else status
