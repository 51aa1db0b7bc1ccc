"""Tiny real warehouses for analytics tests: migrated with Alembic, filled through DuckDB from Arrow."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import polars as pl
import pytest

from warehouse.migrate import upgrade
from warehouse.summaries import accumulate_arrow

EVENT_DEFAULTS: dict[str, Any] = {
    "token_id": 1,
    "s1_token_id": 1,
    "s1_prob": 0.9,
    "s1_entropy": 0.3,
    "s1_margin": 0.8,
    "s2_token_id": 1,
    "llm_token_id": 1,
    "llm_prob": 0.9,
    "llm_entropy": 0.3,
    "llm_prob_s1_token": 0.9,
    "consulted": True,
    "mismatch": False,
}


def add_model(con: duckdb.DuckDBPyConnection, name: str, params: int) -> None:
    """Register a model (idempotent)."""
    con.execute(
        "INSERT INTO models (name, path, params, created_at) VALUES (?, ?, ?, now()) ON CONFLICT DO NOTHING",
        [name, f"/models/{name}", params],
    )


def add_run(
    con: duckdb.DuckDBPyConnection,
    *,
    llm: str = "L",
    slm: str = "S",
    method: str = "oracle",
    router: str = "always",
    dataset: str = "gsm8k",
    status: str = "complete",
    slm_tuned: str | None = None,
    settings: dict[str, Any] | None = None,
    tokens_per_s: float | None = None,
) -> int:
    """Insert a run and return its id."""
    row = con.execute(
        "INSERT INTO runs (run_key, created_at, llm, slm, slm_tuned, method, router, dataset, status, "
        "n_samples, seed, temperature, top_p, device, dtype, settings, tokens_per_s) "
        "VALUES (uuid()::VARCHAR, now(), ?, ?, ?, ?, ?, ?, ?, 0, 0, 0, 1, 'cpu', 'float32', ?, ?) "
        "RETURNING run_id",
        [llm, slm, slm_tuned, method, router, dataset, status, json.dumps(settings or {}), tokens_per_s],
    ).fetchone()
    assert row is not None
    return int(row[0])


def add_events(con: duckdb.DuckDBPyConnection, run_id: int, events: pl.DataFrame) -> None:
    """Append events (needs sample_id, step; other columns default); rel_pos = step / sample length."""
    n_tokens = pl.len().over("sample_id")
    frame = events.with_columns(
        pl.lit(run_id, dtype=pl.Int64).alias("run_id"),
        *[pl.lit(v).alias(k) for k, v in EVENT_DEFAULTS.items() if k not in events.columns],
    )
    if "rel_pos" not in frame.columns:
        frame = frame.with_columns((pl.col("step") / n_tokens).alias("rel_pos"))
    arrow = frame.to_arrow()
    con.register("fsgen_test_events", arrow)
    con.execute("INSERT INTO token_events BY NAME SELECT * FROM fsgen_test_events")
    con.unregister("fsgen_test_events")
    accumulate_arrow(con, run_id, arrow.drop_columns(["run_id"]))  # the summary tables, as ingest does
    samples = frame.group_by("sample_id").agg(pl.len().alias("n_tokens"))
    for sample_id, n in samples.iter_rows():
        add_sample(con, run_id, int(sample_id), n_tokens=int(n))


def add_sample(
    con: duckdb.DuckDBPyConnection,
    run_id: int,
    sample_id: int,
    *,
    n_tokens: int = 1,
    correct: bool | None = None,
) -> None:
    """Insert a sample row (or set `correct` on an existing one)."""
    exists = con.execute(
        "SELECT 1 FROM samples WHERE run_id = ? AND sample_id = ?", [run_id, sample_id]
    ).fetchone()
    if exists:
        con.execute(
            "UPDATE samples SET correct = ? WHERE run_id = ? AND sample_id = ?", [correct, run_id, sample_id]
        )
        return
    con.execute(
        "INSERT INTO samples VALUES (?, ?, ?, 'p', 'o', ?, 3, 'eos', NULL, ?)",
        [run_id, sample_id, f"item-{sample_id}", n_tokens, correct],
    )


def random_events(rng: np.random.Generator, samples: int, length: int, cof: float) -> pl.DataFrame:
    """Events whose mismatch probability rises with entropy and early position (like the paper's findings)."""
    n = samples * length
    step = np.tile(np.arange(length), samples)
    entropy = rng.exponential(1.0, n).astype(np.float32)
    early = np.where(step < length // 10, 3.0, 0.78)
    p = np.clip(cof * entropy * early, 0, 1)
    mismatch = rng.random(n) < p
    prob = np.exp(-0.6 * entropy).astype(np.float32)
    margin = (prob * rng.random(n)).astype(np.float32)
    s1 = rng.integers(0, 50, n)
    return pl.DataFrame(
        {
            "sample_id": np.repeat(np.arange(samples), length).astype(np.int32),
            "step": step.astype(np.int32),
            "s1_entropy": entropy,
            "s1_prob": prob,
            "s1_margin": margin,
            "s1_token_id": s1.astype(np.int32),
            "s2_token_id": np.where(mismatch, s1 + 1, s1).astype(np.int32),
            "token_id": np.where(mismatch, s1 + 1, s1).astype(np.int32),
            "mismatch": mismatch,
        }
    )


@pytest.fixture
def empty_warehouse(tmp_path: Path) -> Path:
    """A fresh warehouse at head with no rows."""
    path = tmp_path / "fsgen.duckdb"
    upgrade(path)
    return path


@pytest.fixture
def con(empty_warehouse: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    """A read-write connection to a fresh warehouse."""
    connection = duckdb.connect(str(empty_warehouse))
    yield connection
    connection.close()


def build_sweep(con: duckdb.DuckDBPyConnection, seed: int = 0) -> dict[str, int]:
    """A small sweep: 4 models, oracle pairs following a scaling law, one never run, accuracies set."""
    rng = np.random.default_rng(seed)
    sizes = {"S": 100, "M": 400, "L": 1600, "XL": 6400}
    for name, params in sizes.items():
        add_model(con, name, params)
    ids: dict[str, int] = {}
    for llm, slm in (("M", "S"), ("L", "S"), ("XL", "S"), ("L", "M"), ("XL", "M")):
        ratio = sizes[llm] / sizes[slm]
        cof = 0.25 - 0.2 * ratio**-0.5
        run_id = add_run(con, llm=llm, slm=slm)
        add_events(con, run_id, random_events(rng, samples=8, length=40, cof=cof))
        for s in range(8):
            add_sample(con, run_id, s, correct=bool(s % 2))
        ids[f"{llm}/{slm}"] = run_id
    never = add_run(con, llm="L", slm="S", router="never")
    add_events(con, never, random_events(rng, samples=4, length=20, cof=0.0))
    for s in range(4):
        add_sample(con, never, s, correct=s == 0)
    ids["never"] = never
    return ids


def add_speculative_schema(con: duckdb.DuckDBPyConnection) -> None:
    """Stand-in for the speculative migration: the columns and table that analytics reads."""
    con.execute("ALTER TABLE token_events ADD COLUMN IF NOT EXISTS draft_index SMALLINT")
    con.execute("ALTER TABLE token_events ADD COLUMN IF NOT EXISTS accepted BOOLEAN")
    con.execute(
        "CREATE TABLE IF NOT EXISTS spec_cycles "
        "(run_id BIGINT, sample_id INTEGER, cycle INTEGER, drafted INTEGER, accepted INTEGER)"
    )
