"""Staged shards: the collector's write path, readable by whichever process ingests.

Layout, next to the warehouse file (`fsgen.duckdb.staging/`):

    <run_key>/run.json                         run manifest (settings, models), written first
    <run_key>/batch-<first_sample_id>/         one finished batch, renamed into place when complete
        samples.arrow, events.arrow[, cycles.arrow for speculative decoding]   (Arrow IPC files)
    <run_key>/written.txt                      sample ids of every staged shard, one line per shard
    <run_key>/final.json                       the run's outcome, written last

Every file is written under a temporary name and renamed, so a reader never sees half a shard. Shards are
Arrow IPC files: the ingester memory-maps them and hands them to DuckDB as Arrow without decoding (Parquet
shards cost more to read back than DuckDB takes to insert them). `python -m warehouse export` writes Parquet.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa

EVENT_SCHEMA = pa.schema(
    [
        ("sample_id", pa.int32()),
        ("step", pa.int32()),
        ("rel_pos", pa.float32()),
        ("token_id", pa.int32()),
        ("s1_token_id", pa.int32()),
        ("s1_prob", pa.float32()),
        ("s1_entropy", pa.float32()),
        ("s1_margin", pa.float32()),
        ("s2_token_id", pa.int32()),
        ("llm_token_id", pa.int32()),
        ("llm_prob", pa.float32()),
        ("llm_entropy", pa.float32()),
        ("llm_prob_s1_token", pa.float32()),
        ("consulted", pa.bool_()),
        ("mismatch", pa.bool_()),
    ]
)

SAMPLE_SCHEMA = pa.schema(
    [
        ("sample_id", pa.int32()),
        ("item_id", pa.string()),
        ("prompt", pa.string()),
        ("output", pa.string()),
        ("n_tokens", pa.int32()),
        ("prompt_tokens", pa.int32()),
        ("stop_reason", pa.string()),
        ("reference", pa.string()),
        ("correct", pa.bool_()),
    ]
)

MANIFEST = "run.json"
WRITTEN = "written.txt"  # sample ids of every shard this run has staged, ingested or not (for resume)
FINAL = "final.json"
BATCH_PREFIX = "batch-"
SAMPLES_FILE = "samples.arrow"
EVENTS_FILE = "events.arrow"
CYCLES_FILE = "cycles.arrow"


def write_arrow(table: pa.Table, path: Path) -> None:
    """One Arrow IPC file (uncompressed: staging is transient, reading it back is a memory map)."""
    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)


def read_arrow(path: Path, columns: list[str] | None = None) -> pa.Table:
    """An Arrow IPC file, memory-mapped."""
    with pa.memory_map(str(path)) as source:
        table = pa.ipc.open_file(source).read_all()
    return table.select(columns) if columns else table


@dataclass(frozen=True)
class ModelInfo:
    """A model as the warehouse records it."""

    name: str
    path: str
    params: int
    architecture: str | None = None
    vocab_size: int | None = None


@dataclass(frozen=True)
class RunManifest:
    """Everything the `runs` row holds that is known when the run starts."""

    run_key: str
    created_at: str
    llm: str
    slm: str
    method: str
    router: str
    dataset: str
    n_samples: int
    seed: int
    temperature: float
    top_p: float
    device: str
    dtype: str
    settings: dict[str, Any]
    models: tuple[ModelInfo, ...]
    slm_tuned: str | None = None
    threshold: float | None = None

    @staticmethod
    def from_json(data: dict[str, Any]) -> RunManifest:
        """Parse a manifest written by `StagingWriter.write_manifest`."""
        models = tuple(ModelInfo(**m) for m in data.pop("models"))
        return RunManifest(models=models, **data)


@dataclass(frozen=True)
class RunFinal:
    """How a run ended; `status` is 'complete' or 'failed'."""

    status: str
    finished_at: str
    wall_s: float
    tokens_per_s: float
    error: str | None = field(default=None)
    # measured costs (rows of run_costs without run_id: kind, tokens, batch_size, seconds)
    costs: list[dict[str, Any]] = field(default_factory=list)


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=path.suffix)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


class StagingWriter:
    """Writes one run's shards; each batch appears whole or not at all."""

    def __init__(self, staging_root: Path, run_key: str) -> None:
        self.run_dir = staging_root / run_key
        self.run_dir.mkdir(parents=True, exist_ok=True)

    def write_manifest(self, manifest: RunManifest) -> None:
        """Write run.json (idempotent: a resumed run rewrites the same content)."""
        payload = asdict(manifest)
        _atomic_write_bytes(self.run_dir / MANIFEST, json.dumps(payload, indent=1).encode())

    def write_batch(
        self, first_sample_id: int, samples: pa.Table, events: pa.Table, cycles: pa.Table | None = None
    ) -> Path:
        """Write a finished batch as a shard folder, renamed into place when complete."""
        final = self.run_dir / f"{BATCH_PREFIX}{first_sample_id:08d}"
        tmp = Path(tempfile.mkdtemp(dir=self.run_dir, prefix=".tmp-batch-"))
        write_arrow(samples.cast(SAMPLE_SCHEMA), tmp / SAMPLES_FILE)
        missing = set(EVENT_SCHEMA.names) - set(events.column_names)
        if missing:
            raise ValueError(f"event batch lacks columns {sorted(missing)}")
        write_arrow(events, tmp / EVENTS_FILE)
        if cycles is not None:
            write_arrow(cycles, tmp / CYCLES_FILE)
        os.replace(tmp, final)
        ids = samples.column("sample_id").to_pylist()
        with open(self.run_dir / WRITTEN, "a") as fh:
            fh.write(",".join(str(i) for i in ids) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        return final

    def write_final(self, final: RunFinal) -> None:
        """Write final.json: the ingester marks the run finished once every batch is in."""
        _atomic_write_bytes(self.run_dir / FINAL, json.dumps(asdict(final)).encode())


def read_manifest(run_dir: Path) -> RunManifest | None:
    """The manifest of a staged run, None if it is not written yet."""
    path = run_dir / MANIFEST
    return RunManifest.from_json(json.loads(path.read_text())) if path.exists() else None


def read_final(run_dir: Path) -> RunFinal | None:
    """The final record of a staged run, None while it runs."""
    path = run_dir / FINAL
    return RunFinal(**json.loads(path.read_text())) if path.exists() else None


def batch_dirs(run_dir: Path) -> list[Path]:
    """Finished batch shards of a staged run, oldest first."""
    return sorted(p for p in run_dir.glob(f"{BATCH_PREFIX}*") if p.is_dir())


def staged_sample_ids(run_dir: Path) -> set[int]:
    """Sample ids of every shard this run has staged, whether or not it has been ingested since."""
    ids: set[int] = set()
    written = run_dir / WRITTEN
    if written.exists():
        ids.update(int(v) for line in written.read_text().splitlines() for v in line.split(",") if v)
    for shard in batch_dirs(run_dir):
        # A shard without its samples file lost it to a removal cut short after ingest: `written` has its ids.
        if (shard / SAMPLES_FILE).exists():
            column = read_arrow(shard / SAMPLES_FILE, ["sample_id"])["sample_id"]
            ids.update(int(v) for v in column.to_pylist())
    return ids
