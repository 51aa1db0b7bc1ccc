"""Quarantine: a shard that fails to read or verify is moved aside with its reason and blocks nothing else.

    <staging>/.quarantine/<run_key>/batch-<first_sample_id>[-n]/   the shard's files as they were found
        reason.json                                                 why, when, and the sample ids it held

The shard's sample ids are also struck from the run's `written.txt`, so `--resume` collects them again;
a run with samples missing is never marked complete (see `warehouse.ingest.finish_run`).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path

import pyarrow as pa

from warehouse.staging import (
    BATCH_PREFIX,
    QUARANTINE,
    QUARANTINED_PREFIX,
    SAMPLES_FILE,
    WRITTEN,
    read_arrow,
    strike_written,
)

REASON_FILE = "reason.json"


@dataclass(frozen=True)
class QuarantinedShard:
    """One shard moved aside: where it is now, why, and which samples of which run it held."""

    run_key: str
    shard: str
    reason: str
    quarantined_at: str
    sample_ids: tuple[int, ...]
    path: str


def quarantine_root(staging_root: Path) -> Path:
    """Where quarantined shards wait for a person."""
    return staging_root / QUARANTINE


def _shard_sample_ids(shard: Path) -> tuple[int, ...]:
    """The shard's sample ids: its `written.txt` line (a shard is named after its first id), else its file."""
    first = int(shard.name.removeprefix(BATCH_PREFIX))
    written = shard.parent / WRITTEN
    lines = written.read_text().splitlines() if written.exists() else []
    for line in reversed(lines):
        if line and not line.startswith(QUARANTINED_PREFIX) and int(line.split(",")[0]) == first:
            return tuple(int(v) for v in line.split(","))
    try:
        return tuple(int(v) for v in read_arrow(shard / SAMPLES_FILE, ["sample_id"])["sample_id"].to_pylist())
    except (OSError, pa.ArrowException, KeyError):
        return (first,)


def _free_name(folder: Path, name: str) -> Path:
    target, n = folder / name, 1
    while target.exists():
        n += 1
        target = folder / f"{name}-{n}"
    return target


def quarantine_shard(shard: Path, reason: str) -> QuarantinedShard:
    """Move a bad shard into the quarantine folder with its reason; strike its ids from `written.txt`."""
    run_dir = shard.parent
    ids = _shard_sample_ids(shard)
    folder = quarantine_root(run_dir.parent) / run_dir.name
    folder.mkdir(parents=True, exist_ok=True)
    target = _free_name(folder, shard.name)
    os.replace(shard, target)
    record = QuarantinedShard(
        run_key=run_dir.name,
        shard=shard.name,
        reason=reason,
        quarantined_at=datetime.now().isoformat(timespec="seconds"),
        sample_ids=ids,
        path=str(target),
    )
    (target / REASON_FILE).write_text(json.dumps(asdict(record), indent=1))
    strike_written(run_dir, ids)
    return record


def quarantine_run(run_dir: Path, reason: str) -> QuarantinedShard:
    """Move a whole staged run aside (its run.json cannot be read, so none of it can be ingested)."""
    folder = quarantine_root(run_dir.parent) / run_dir.name
    folder.mkdir(parents=True, exist_ok=True)
    target = _free_name(folder, "run")
    os.replace(run_dir, target)
    record = QuarantinedShard(
        run_key=run_dir.name,
        shard="(whole run)",
        reason=reason,
        quarantined_at=datetime.now().isoformat(timespec="seconds"),
        sample_ids=(),
        path=str(target),
    )
    (target / REASON_FILE).write_text(json.dumps(asdict(record), indent=1))
    return record


def quarantined_shards(staging_root: Path) -> list[QuarantinedShard]:
    """Every quarantined shard under a staging folder, oldest first."""
    root = quarantine_root(staging_root)
    records = []
    for reason in sorted(root.glob(f"*/*/{REASON_FILE}")):
        data = json.loads(reason.read_text())
        data["sample_ids"] = tuple(data["sample_ids"])
        data["path"] = str(reason.parent)
        records.append(QuarantinedShard(**data))
    return sorted(records, key=lambda r: r.quarantined_at)
