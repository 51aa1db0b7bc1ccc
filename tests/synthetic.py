"""Small warehouses from synthetic runs, written through the real path: staged shards, then ingest.

A run is described by a `RunConfig` (its identity is derived as the collector derives it) and filled with
random events; nothing runs a model.
"""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa

from collector.config import RunConfig, run_identity
from warehouse.catalogue import CYCLE_SCHEMA, EVENT_SCHEMA, SAMPLE_SCHEMA, arrow_table
from warehouse.db import duckdb_connection
from warehouse.ingest import ingest_pending
from warehouse.migrate import upgrade
from warehouse.settings import staging_dir
from warehouse.staging import ModelInfo, RunFinal, RunManifest, StagingWriter

# Counted parameters of the synthetic models (System 2 is the larger, as the collector demands).
PARAMS = {"L": 1_000_000, "M": 200_000, "S": 30_000, "XS": 8_000}
_CLOCK = [datetime(2026, 12, 1, 12, 0, 0)]


def manifest_of(config: RunConfig, run_key: str, samples: int) -> RunManifest:
    """The manifest the collector would write for `config` on CPU in float32."""
    resolved = {"device": "cpu", "dtype": "float32"}
    names = {"llm": config.llm, "slm": config.slm, "slm_tuned": config.slm_tuned}  # as the engine resolves
    identity, setup = run_identity(config.identity_values(**names, **resolved))
    _CLOCK[0] += timedelta(seconds=1)  # runs are ordered by creation, as in life
    models = [m for m in (config.llm, config.slm, config.slm_tuned) if m]
    return RunManifest(
        run_key=run_key,
        created_at=_CLOCK[0].isoformat(),
        llm=config.llm,
        slm=config.slm,
        slm_tuned=config.slm_tuned,
        method=config.method,
        router=config.router,
        threshold=config.threshold,
        dataset=config.dataset or "prompts",
        n_samples=samples,
        seed=config.seed,
        temperature=config.temperature,
        top_p=config.top_p,
        settings=config.settings(),
        models=tuple(ModelInfo(n, f"/models/{n}", PARAMS.get(n, 1000)) for n in dict.fromkeys(models)),
        experiment=config.experiment,
        identity=identity,
        setup=setup,
        **resolved,
    )


def events(rng: np.random.Generator, lengths: list[int], cof: float, spec: bool) -> pa.Table:
    """Events of consecutive samples 0.. with these lengths; mismatches at rate `cof`, likelier early."""
    sample = np.repeat(np.arange(len(lengths)), lengths).astype(np.int32)
    step = np.concatenate([np.arange(n) for n in lengths]).astype(np.int32)
    n = len(step)
    rel = (step / np.repeat(lengths, lengths)).astype(np.float32)
    entropy = rng.exponential(1.0, n).astype(np.float32)
    mismatch = rng.random(n) < np.clip(cof * (0.5 + entropy) * np.where(rel < 0.1, 2.0, 1.0), 0, 1)
    s1 = rng.integers(0, 100, n, dtype=np.int32)
    prob = np.exp(-0.6 * entropy).astype(np.float32)
    f32 = lambda: rng.random(n, dtype=np.float32)  # noqa: E731
    cols = {
        "sample_id": sample, "step": step, "rel_pos": rel, "token_id": np.where(mismatch, s1 + 1, s1),
        "s1_token_id": s1, "s1_prob": prob, "s1_entropy": entropy, "s1_margin": prob * f32(),
        "s2_token_id": np.where(mismatch, s1 + 1, s1), "llm_token_id": np.where(mismatch, s1 + 1, s1),
        "llm_prob": f32(), "llm_entropy": f32(), "llm_prob_s1_token": f32(),
        "consulted": np.ones(n, bool), "mismatch": mismatch, "accept_prob": f32(),
    }  # fmt: skip
    if spec:
        cols |= {"draft_index": (step % 3).astype(np.int16), "accepted": ~mismatch}
    return arrow_table(cols, EVENT_SCHEMA)


def samples_table(lengths: list[int], rng: np.random.Generator) -> pa.Table:
    """One sample row per length (prompt i is the same text in every run: paired comparisons work)."""
    n = len(lengths)
    return pa.table(
        {
            "sample_id": pa.array(range(n), pa.int32()),
            "item_id": [f"item-{i}" for i in range(n)],
            "prompt": [f"prompt {i}" for i in range(n)],
            "output": ["o"] * n,
            "n_tokens": pa.array(lengths, pa.int32()),
            "prompt_tokens": pa.array([10] * n, pa.int32()),
            "stop_reason": ["max_new_tokens"] * n,
            "reference": [str(i) for i in range(n)],
            "correct": pa.array(rng.random(n) < 0.6),
        }
    ).cast(SAMPLE_SCHEMA)


def cycles_table(lengths: list[int]) -> pa.Table:
    """Draft/verify rounds of 3 drafted tokens per sample (for speculative runs)."""
    rows = [(s, c, 3, c % 4) for s, n in enumerate(lengths) for c in range(max(1, n // 3))]
    cols = list(zip(*rows, strict=True))
    return pa.table({k: list(v) for k, v in zip(CYCLE_SCHEMA.names, cols, strict=True)}, schema=CYCLE_SCHEMA)


def stage_run(
    warehouse: Path, config: RunConfig, *, lengths: list[int], cof: float = 0.2, seed: int = 0,
    finish: bool = True,
) -> str:  # fmt: skip
    """Stage one run (a shard of every sample, and its end unless `finish` is False); returns its key."""
    rng = np.random.default_rng(seed)
    key = uuid.uuid4().hex
    writer = StagingWriter(staging_dir(warehouse), key)
    writer.write_manifest(manifest_of(config, key, len(lengths)))
    spec = config.method == "speculative"
    cycles = cycles_table(lengths) if spec else None
    writer.write_batch(0, samples_table(lengths, rng), events(rng, lengths, cof, spec), cycles)
    if finish:
        tokens = sum(lengths)
        costs = [{"kind": "decode", "tokens": tokens, "batch_size": 16, "seconds": tokens / 500.0}]
        writer.write_final(RunFinal("complete", datetime.now().isoformat(), 1.0, 500.0, None, costs))
    return key


def ingest(warehouse: Path) -> None:
    """Ingest every staged run (one transaction per shard, as the collector or the API would)."""
    with duckdb_connection(warehouse) as con:
        ingest_pending(con, warehouse)


def add_run(warehouse: Path, config: RunConfig, **kw: object) -> int:
    """Stage and ingest one run; returns its run_id."""
    key = stage_run(warehouse, config, **kw)  # type: ignore[arg-type]
    with duckdb_connection(warehouse) as con:
        ingest_pending(con, warehouse)
        row = con.execute("SELECT run_id FROM runs WHERE run_key = ?", [key]).fetchone()
    assert row is not None
    return int(row[0])


def config(llm: str = "L", slm: str = "S", **kw: object) -> RunConfig:
    """A run configuration on the built-in arithmetic task unless told otherwise."""
    base = RunConfig(llm=llm, slm=slm, dataset="builtin:arith")
    return replace(base, **kw)  # type: ignore[arg-type]


def compared_runs(path: Path) -> tuple[int, int]:
    """A new warehouse with an oracle and a contrastive run of one pair on the same five prompts (different
    tokens; the second in another experiment); returns their run ids."""
    upgrade(path)
    a = add_run(path, config(), lengths=[6, 9, 4, 7, 5], cof=0.1, seed=1)
    other = config(method="contrastive", lam=1.5, experiment="other")
    return a, add_run(path, other, lengths=[6, 9, 8, 7, 3], cof=0.4)
