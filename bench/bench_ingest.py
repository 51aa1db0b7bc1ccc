"""Ingest throughput: staged shards -> DuckDB (the collector's path) against SQLAlchemy executemany.

    python -m bench.bench_ingest [--events 2000000] [--shard-events 100000] [--orm-events 5000]

Both run in this process on fresh warehouse files under a temporary folder; prints events/s and the ratio.
"""

from __future__ import annotations

import argparse
import tempfile
import time
import uuid
from datetime import datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import sqlalchemy as sa

from warehouse.catalogue import EVENT_SCHEMA, SAMPLE_SCHEMA, arrow_table
from warehouse.db import duckdb_connection, make_engine
from warehouse.ingest import ingest_pending, insert_batch
from warehouse.migrate import upgrade
from warehouse.models import TokenEvent
from warehouse.settings import staging_dir
from warehouse.staging import ModelInfo, RunManifest, StagingWriter
from warehouse.summaries import accumulate_arrow


def synthetic_events(n: int, first_sample: int, rng: np.random.Generator) -> pa.Table:
    """n events over samples of 100 tokens each."""
    step = np.arange(n, dtype=np.int32) % 100
    s1 = rng.integers(0, 50_000, n, dtype=np.int32)
    tok = np.where(rng.random(n) < 0.15, rng.integers(0, 50_000, n, dtype=np.int32), s1)
    f32 = lambda: rng.random(n, dtype=np.float32)  # noqa: E731
    cols = {
        "sample_id": (first_sample + np.arange(n) // 100).astype(np.int32),
        "step": step,
        "rel_pos": (step / 100).astype(np.float32),
        "token_id": tok,
        "s1_token_id": s1,
        "s1_prob": f32(),
        "s1_entropy": f32() * 5,
        "s1_margin": f32(),
        "s2_token_id": tok,
        "llm_token_id": tok,
        "llm_prob": f32(),
        "llm_entropy": f32() * 5,
        "llm_prob_s1_token": f32(),
        "consulted": np.ones(n, dtype=bool),
        "mismatch": tok != s1,
        "accept_prob": f32(),
    }
    return arrow_table(cols, EVENT_SCHEMA)


def synthetic_samples(ids: range) -> pa.Table:
    """One sample row per id."""
    n = len(ids)
    return pa.table(
        {
            "sample_id": pa.array(list(ids), pa.int32()),
            "item_id": [str(i) for i in ids],
            "prompt": ["p"] * n,
            "output": ["o"] * n,
            "n_tokens": pa.array([100] * n, pa.int32()),
            "prompt_tokens": pa.array([10] * n, pa.int32()),
            "stop_reason": ["max_new_tokens"] * n,
            "reference": pa.nulls(n, pa.string()),
            "correct": pa.nulls(n, pa.bool_()),
        }
    ).cast(SAMPLE_SCHEMA)


def manifest(run_key: str) -> RunManifest:
    """A run manifest for the synthetic run."""
    models = (ModelInfo("bench-llm", "-", 1_000_000), ModelInfo("bench-slm", "-", 30_000))
    return RunManifest(
        run_key=run_key,
        created_at=datetime.now().isoformat(),
        llm="bench-llm",
        slm="bench-slm",
        method="oracle",
        router="always",
        dataset="bench",
        n_samples=0,
        seed=0,
        temperature=0.0,
        top_p=1.0,
        device="cpu",
        dtype="float32",
        settings={},
        models=models,
    )


def bench_staged(root: Path, events: int, shard_events: int) -> float:
    """Events/s of `ingest_pending` over staged shards (shard reads and summary tables included)."""
    path = root / "staged.duckdb"
    upgrade(path)
    run_key = uuid.uuid4().hex
    writer = StagingWriter(staging_dir(path), run_key)
    writer.write_manifest(manifest(run_key))
    rng = np.random.default_rng(0)
    for first in range(0, events, shard_events):
        ev = synthetic_events(shard_events, first // 100, rng)
        writer.write_batch(
            first // 100, synthetic_samples(range(first // 100, (first + shard_events) // 100)), ev
        )
    with duckdb_connection(path) as con:
        start = time.perf_counter()
        report = ingest_pending(con, path)
        elapsed = time.perf_counter() - start
        count = con.execute("SELECT count(*) FROM token_events").fetchone()
    assert report.events == events and count == (events,)
    return events / elapsed


def bench_arrow(root: Path, events: int) -> float:
    """Events/s of `insert_batch` alone: one in-memory Arrow table into DuckDB, committed."""
    path = root / "arrow.duckdb"
    upgrade(path)
    ev = synthetic_events(events, 0, np.random.default_rng(2))
    samples = synthetic_samples(range(events // 100))
    with duckdb_connection(path) as con:
        start = time.perf_counter()
        con.execute("BEGIN TRANSACTION")
        insert_batch(con, 1, samples, ev)
        con.execute("COMMIT")
        elapsed = time.perf_counter() - start
    return events / elapsed


def bench_summaries(root: Path, events: int) -> float:
    """Events/s of `accumulate_arrow` alone: one in-memory Arrow table summed into the summary tables."""
    path = root / "summaries.duckdb"
    upgrade(path)
    ev = synthetic_events(events, 0, np.random.default_rng(3))
    with duckdb_connection(path) as con:
        start = time.perf_counter()
        con.execute("BEGIN TRANSACTION")
        accumulate_arrow(con, 1, ev)
        con.execute("COMMIT")
        elapsed = time.perf_counter() - start
    return events / elapsed


def bench_orm(root: Path, events: int) -> float:
    """Events/s of SQLAlchemy Core executemany of the same rows."""
    path = root / "orm.duckdb"
    upgrade(path)
    rows = synthetic_events(events, 0, np.random.default_rng(1)).to_pylist()
    for r in rows:
        r["run_id"] = 1
    engine = make_engine(path)
    start = time.perf_counter()
    with engine.begin() as conn:
        conn.execute(sa.insert(TokenEvent), rows)
    elapsed = time.perf_counter() - start
    engine.dispose()
    return events / elapsed


def main() -> None:
    """Run both and print the comparison."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--events", type=int, default=2_000_000)
    p.add_argument("--shard-events", type=int, default=100_000)
    p.add_argument("--orm-events", type=int, default=5_000)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        staged = bench_staged(Path(tmp), args.events, args.shard_events)
        arrow = bench_arrow(Path(tmp), args.events)
        summed = bench_summaries(Path(tmp), args.events)
        orm = bench_orm(Path(tmp), args.orm_events)
    print(
        f"staged-shard ingest : {staged:>14,.0f} events/s "
        f"({args.events:,} events, {args.shard_events:,}/shard)"
    )
    print(f"Arrow insert alone  : {arrow:>14,.0f} events/s (one in-memory table, no Parquet)")
    print(f"summary tables alone: {summed:>14,.0f} events/s (the same table summed at ingest)")
    print(f"SQLAlchemy executemany: {orm:>12,.0f} events/s ({args.orm_events:,} events)")
    print(f"ratio               : {staged / orm:>14,.1f}x   target: >= 1,000,000 events/s")


if __name__ == "__main__":
    main()
