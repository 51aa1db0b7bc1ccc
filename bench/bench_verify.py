"""What the shard checksums cost: SHA-256 verification against the ingest that follows it.

    python -m bench.bench_verify [--events 2000000] [--shard-events 100000] [--repeat 3]

Stages synthetic shards (as `bench.bench_ingest` does) in a temporary folder, then times, in this process,
`verify_shard` over every shard (hash of each file, Arrow open, schema check) and the whole
`ingest_pending` pass (which verifies, then inserts); prints events/s of each and the verification's share.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.bench_ingest import manifest, synthetic_events, synthetic_samples
from warehouse.db import duckdb_connection
from warehouse.ingest import ingest_pending
from warehouse.migrate import upgrade
from warehouse.settings import staging_dir
from warehouse.staging import StagingWriter, batch_dirs, verify_shard


def stage(path: Path, events: int, shard_events: int) -> StagingWriter:
    """A run of `events` synthetic events in shards of `shard_events`."""
    writer = StagingWriter(staging_dir(path), "bench-verify")
    writer.write_manifest(manifest("bench-verify"))
    rng = np.random.default_rng(0)
    for first in range(0, events, shard_events):
        sample0 = first // 100
        samples = synthetic_samples(range(sample0, sample0 + shard_events // 100))
        writer.write_batch(sample0, samples, synthetic_events(shard_events, sample0, rng))
    return writer


def one_round(root: Path, events: int, shard_events: int) -> tuple[float, float]:
    """(verify seconds, ingest seconds) on a fresh file."""
    path = root / f"v{time.monotonic_ns()}.duckdb"
    upgrade(path)
    writer = stage(path, events, shard_events)
    start = time.perf_counter()
    assert all(verify_shard(s) is None for s in batch_dirs(writer.run_dir))
    verify = time.perf_counter() - start
    with duckdb_connection(path) as con:
        start = time.perf_counter()
        report = ingest_pending(con, path)
        ingest = time.perf_counter() - start
    assert report.events == events
    return verify, ingest


def main() -> None:
    """Run the rounds and print medians."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=2_000_000)
    parser.add_argument("--shard-events", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        rounds = [one_round(Path(tmp), args.events, args.shard_events) for _ in range(args.repeat)]
    verify = statistics.median(r[0] for r in rounds)
    ingest = statistics.median(r[1] for r in rounds)
    print(f"verify_shard alone : {args.events / verify:>14,.0f} events/s (median of {args.repeat})")
    print(f"ingest_pending     : {args.events / ingest:>14,.0f} events/s (verification included)")
    print(f"verification share : {verify / ingest:>14.1%} of the ingest pass")


if __name__ == "__main__":
    main()
