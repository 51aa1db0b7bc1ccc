"""The summary tables equal an aggregation of token_events from scratch, whatever the sequence of ingests."""

from __future__ import annotations

import shutil
import uuid
from dataclasses import replace
from itertools import combinations_with_replacement
from pathlib import Path

import duckdb
import numpy as np
import polars as pl
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench.bench_ingest import manifest, synthetic_samples
from warehouse.__main__ import main as warehouse_main
from warehouse.catalogue import EVENT_SCHEMA, arrow_table
from warehouse.db import duckdb_connection
from warehouse.ingest import ensure_run, ingest_group, ingest_pending, insert_batch
from warehouse.migrate import downgrade, upgrade
from warehouse.runs import delete_runs
from warehouse.settings import staging_dir
from warehouse.staging import (
    EVENTS_FILE,
    SAMPLES_FILE,
    StagingWriter,
    batch_dirs,
    read_arrow,
    read_manifest,
)
from warehouse.summaries import EARLY_WINDOWS, TABLES

# Values on and around the bins' edges (entropy bins of 0.5 nats, the open last bin, grid cells; the
# router grid's 1/512 nat, and 1/4096 of probability below).
EDGES = np.array([0.0, 0.005, 0.5, 1.0, 5.5, 6.0, 12.5, 0.4999, 3 / 512], dtype=np.float32)


def batch_events(rng: np.random.Generator, first_sample: int, lengths: list[int]) -> pa.Table:
    """Events of consecutive samples with the given lengths; rel_pos = step / length as the collector does."""
    sample = np.repeat(np.arange(first_sample, first_sample + len(lengths)), lengths).astype(np.int32)
    step = np.concatenate([np.arange(n) for n in lengths]).astype(np.int32)
    rel = (step / np.repeat(lengths, lengths)).astype(np.float32)
    n = len(step)
    entropy = np.where(rng.random(n) < 0.3, rng.choice(EDGES, n), rng.exponential(2.0, n)).astype(np.float32)
    prob = rng.random(n, dtype=np.float32)
    prob = np.where(rng.random(n) < 0.2, np.round(prob * 4096) / 4096, prob).astype(np.float32)  # edges
    mismatch = rng.random(n) < 0.3
    s1 = rng.integers(0, 100, n, dtype=np.int32)
    f32 = lambda: rng.random(n, dtype=np.float32)  # noqa: E731
    cols = {
        "sample_id": sample,
        "step": step,
        "rel_pos": rel,
        "token_id": np.where(mismatch, s1 + 1, s1),
        "s1_token_id": s1,
        "s1_prob": prob,
        "s1_entropy": entropy,
        "s1_margin": prob * f32(),
        "s2_token_id": np.where(rng.random(n) < 0.2, s1 + 2, s1),  # replay mismatches (router_sums)
        "llm_token_id": s1,
        "llm_prob": f32(),
        "llm_entropy": f32(),
        "llm_prob_s1_token": f32(),
        "consulted": rng.random(n) < 0.7,
        "mismatch": mismatch,
        "accept_prob": f32(),
    }
    return arrow_table(cols, EVENT_SCHEMA)


def summaries(con: duckdb.DuckDBPyConnection) -> dict[str, list[tuple[object, ...]]]:
    """Every summary table's rows, sorted."""
    return {
        t.name: sorted(con.execute(f"SELECT {', '.join(t.columns)} FROM {t.name}").fetchall())  # type: ignore[type-var]
        for t in TABLES
    }


def from_scratch(con: duckdb.DuckDBPyConnection) -> dict[str, list[tuple[object, ...]]]:
    """Each table's sums computed over all of token_events at once."""
    return {t.name: sorted(t.scratch_rows(con, "token_events")) for t in TABLES}  # type: ignore[type-var]


def approx(tables: dict[str, list[tuple[object, ...]]]) -> dict[str, list[tuple[object, ...]]]:
    """Floats (window_moments' sums of d and d²) as equal to rounding: a batch adds its samples' share in an
    order of its own."""
    return {
        name: [
            tuple(pytest.approx(v, rel=1e-12, abs=1e-9) if isinstance(v, float) else v for v in row)
            for row in rows
        ]  # fmt: skip
        for name, rows in tables.items()
    }


def check(path: Path) -> None:
    with duckdb.connect(str(path), read_only=True) as con:
        got, want = summaries(con), from_scratch(con)
        events = con.execute("SELECT count(*) FROM token_events").fetchall()[0][0]
    assert got == approx(want)
    assert sum(int(r[1]) for r in got["run_sums"]) == events  # type: ignore[call-overload]


@pytest.fixture(scope="module")
def shared_warehouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One file for all examples (migrating per example would cost a second each); runs accumulate."""
    path = tmp_path_factory.mktemp("summ") / "fsgen.duckdb"
    upgrade(path)
    return path


# A batch: (run 0..2, sample lengths, staged a second time after it was ingested)
BATCH = st.tuples(st.integers(0, 2), st.lists(st.integers(1, 25), min_size=1, max_size=4), st.booleans())


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batches=st.lists(BATCH, min_size=1, max_size=5), seed=st.integers(0, 2**32 - 1))
def test_summaries_equal_events_after_any_ingests(
    shared_warehouse: Path,
    tmp_path: Path,
    batches: list[tuple[int, list[int], bool]],
    seed: int,
) -> None:
    rng, tag = np.random.default_rng(seed), uuid.uuid4()  # fresh runs in the shared file
    root = staging_dir(shared_warehouse)
    writers = [StagingWriter(root, f"{tag.hex}-{i}") for i in range(3)]
    for w in writers:
        w.write_manifest(manifest(w.run_dir.name))
    next_sample = [0, 0, 0]
    with duckdb_connection(shared_warehouse) as con:
        for run, lengths, again in batches:
            first = next_sample[run]
            next_sample[run] += len(lengths)
            samples = synthetic_samples(range(first, first + len(lengths)))
            shard = writers[run].write_batch(first, samples, batch_events(rng, first, lengths))
            saved = tmp_path / f"{shard.parent.name}-{shard.name}"  # run names are unique per example
            shutil.copytree(shard, saved)
            ingest_pending(con, shared_warehouse)
            if again:  # restored as after a crash between commit and removal: the ledger skips it
                shutil.copytree(saved, shard)
                assert ingest_pending(con, shared_warehouse).events == 0
                assert batch_dirs(shard.parent) == []
    check(shared_warehouse)


def test_a_shard_forced_in_twice_rolls_back_whole(warehouse_path: Path, tmp_path: Path) -> None:
    writer = StagingWriter(staging_dir(warehouse_path), "twice")
    writer.write_manifest(manifest("twice"))
    shard = writer.write_batch(
        0, synthetic_samples(range(3)), batch_events(np.random.default_rng(1), 0, [5, 9, 2])
    )
    saved = tmp_path / "saved"
    shutil.copytree(shard, saved)
    with duckdb_connection(warehouse_path) as con:
        ingest_pending(con, warehouse_path)
        before = summaries(con)
        shutil.copytree(saved, shard)
        run_id = con.execute("SELECT run_id FROM runs").fetchall()[0][0]
        with pytest.raises(duckdb.Error):  # the ledger's key refuses the second copy
            ingest_group(con, run_id, [shard])
        assert summaries(con) == before
    check(warehouse_path)


def _fill_behind_head(path: Path) -> None:
    """Events written into a file at 0003 (before the summary tables existed)."""
    upgrade(path, "0003")
    writer = StagingWriter(staging_dir(path), "old")
    writer.write_manifest(manifest("old"))
    rng = np.random.default_rng(7)
    for first in (0, 4):
        lengths = [int(n) for n in rng.integers(1, 30, 4)]
        writer.write_batch(
            first, synthetic_samples(range(first, first + 4)), batch_events(rng, first, lengths)
        )
    with duckdb_connection(path) as con:  # the 0003 ingest path: events only, no summaries
        m = read_manifest(writer.run_dir)
        assert m is not None
        for info in m.models:  # the models table as it was before 0010 (no source, no quantization)
            con.execute(
                "INSERT INTO models (name, path, params, architecture, vocab_size, created_at) "
                "VALUES (?, ?, ?, ?, ?, now()) ON CONFLICT DO NOTHING",
                [info.name, info.path, info.params, info.architecture, info.vocab_size],
            )
        old = replace(m, models=(), experiment=None, identity=None, setup=None)  # not columns yet
        run_id = ensure_run(con, old)
        for shard in batch_dirs(writer.run_dir):
            events = read_arrow(shard / EVENTS_FILE).drop_columns(["accept_prob"])  # 0005 added it
            insert_batch(con, run_id, read_arrow(shard / SAMPLES_FILE), events)
            shutil.rmtree(shard)


def test_migration_backfills_and_views_keep_their_output(tmp_path: Path) -> None:
    path = tmp_path / "old.duckdb"
    _fill_behind_head(path)
    views = ("run_cof", "pair_cof", "position_profile", "entropy_profile")
    with duckdb.connect(str(path), read_only=True) as con:
        old = {v: sorted(con.execute(f"SELECT * FROM {v}").fetchall()) for v in views}
        columns = {v: ", ".join(d[0] for d in con.execute(f"SELECT * FROM {v}").description) for v in views}
    upgrade(path)
    check(path)  # the migration's copy of the summing SQL agrees with warehouse.summaries
    with duckdb.connect(str(path), read_only=True) as con:  # the views' columns at 0003, as they were
        new = {v: sorted(con.execute(f"SELECT {columns[v]} FROM {v}").fetchall()) for v in views}
        plan = con.execute("EXPLAIN SELECT * FROM position_profile").fetchall()[0][1]
    assert new == old and "token_events" not in plan
    downgrade(path, "0003")
    with duckdb.connect(str(path), read_only=True) as con:
        assert {v: sorted(con.execute(f"SELECT * FROM {v}").fetchall()) for v in views} == old


def test_rebuild_summaries_command(warehouse_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    writer = StagingWriter(staging_dir(warehouse_path), "rb")
    writer.write_manifest(manifest("rb"))
    writer.write_batch(0, synthetic_samples(range(2)), batch_events(np.random.default_rng(3), 0, [7, 11]))
    with duckdb_connection(warehouse_path) as con:
        ingest_pending(con, warehouse_path)
        for t in TABLES:  # damage them
            con.execute(f"DELETE FROM {t.name} WHERE {'tokens > 3' if 'tokens' in t.columns else 'lo >= 0'}")
    assert warehouse_main(["--warehouse", str(warehouse_path), "rebuild-summaries"]) == 0
    assert "from 18 token events" in capsys.readouterr().out
    check(warehouse_path)


def test_a_sample_split_over_two_shards_adds_up(warehouse_path: Path) -> None:
    """Its first steps in one shard, the rest in a later one: the per-sample rows (inserted for the first,
    added to for the second) equal the sums from scratch."""
    writer = StagingWriter(staging_dir(warehouse_path), "split")
    writer.write_manifest(manifest("split"))
    events = batch_events(np.random.default_rng(4), 0, [12, 20])
    early = pa.compute.less(events["step"], 6)
    writer.write_batch(0, synthetic_samples(range(2)), events.filter(early))
    with duckdb_connection(warehouse_path) as con:
        ingest_pending(con, warehouse_path)
        writer.write_batch(2, synthetic_samples(range(0)), events.filter(pa.compute.invert(early)))
        ingest_pending(con, warehouse_path)
        assert con.execute("SELECT count(*), sum(tokens) FROM sample_sums").fetchall() == [(2, 32)]
    check(warehouse_path)


def _moments_counted(con: duckdb.DuckDBPyConnection) -> dict[tuple[int, str], dict[str, object]]:
    """`window_moments` counted here from token_events, sample by sample (the windows' conditions written
    anew from their names: `step_lt_k` is step < k, `cell_lt_c` is floor(rel_pos · 1000) < c)."""
    events = con.sql("SELECT run_id, sample_id, step, rel_pos, mismatch FROM token_events").pl()
    names = {"n": "tokens", "m": "mismatches", "e": "early_tokens", "em": "early_mismatches"}
    out = {}
    for window in EARLY_WINDOWS:
        kind, bound = window.split("_lt_")
        at = pl.col("step") if kind == "step" else (pl.col("rel_pos").cast(pl.Float64) * 1000).floor()
        early = at < int(bound)
        per = events.group_by("run_id", "sample_id").agg(
            n=pl.len(), m=pl.col("mismatch").sum(), e=early.sum(), em=(early & pl.col("mismatch")).sum()
        )
        for (run,), part in per.group_by("run_id"):
            x = {c: part[c].to_numpy().astype(np.int64) for c in names}
            d = x["em"] - x["m"] * (x["e"] / x["n"])
            products = {
                f"{a}_{b}": int((x[a] * x[b]).sum()) for a, b in combinations_with_replacement(names, 2)
            }
            sums = {names[c]: int(v.sum()) for c, v in x.items()}
            out[(int(run), window)] = {
                "samples": part.height,
                **sums,
                **products,
                "d": d.sum(),
                "d_d": (d * d).sum(),
            }
    return {**out, **_sample_moments_counted(con)}


def _sample_moments_counted(con: duckdb.DuckDBPyConnection) -> dict[tuple[int, str], dict[str, object]]:
    """`sample_moments` counted here from token_events, sample by sample (keyed as window_moments' rows)."""
    events = con.sql("SELECT run_id, sample_id, consulted, mismatch FROM token_events").pl()
    per = events.group_by("run_id", "sample_id").agg(
        n=pl.len(), c=pl.col("consulted").sum(), m=pl.col("mismatch").sum()
    )
    out: dict[tuple[int, str], dict[str, object]] = {}
    for (run,), part in per.group_by("run_id"):
        n, c, m = (part[k].to_numpy().astype(np.int64) for k in ("n", "c", "m"))
        r = m / n
        out[(int(run), "all")] = {
            "samples": part.height, "tokens": int(n.sum()), "consulted": int(c.sum()),
            "mismatches": int(m.sum()), "m_m": int((m * m).sum()), "m_n": int((m * n).sum()),
            "n_n": int((n * n).sum()), "r": r.sum(), "r_r": (r * r).sum(),
        }  # fmt: skip
    return out


def _moments_stored(con: duckdb.DuckDBPyConnection) -> dict[tuple[int, str], dict[str, object]]:
    rows = con.sql("SELECT * FROM window_moments").pl()
    stored = {(r.pop("run_id"), r.pop("window_name")): r for r in rows.iter_rows(named=True)}
    runs = con.sql("SELECT * FROM sample_moments").pl()
    return {**stored, **{(r.pop("run_id"), "all"): r for r in runs.iter_rows(named=True)}}


def test_window_moments_equal_the_samples_counted_from_events(warehouse_path: Path) -> None:
    """Samples split over two ingests, then a run deleted, then `rebuild-summaries`: the stored moments (per
    window, and `sample_moments` per run) stay those of the samples the events hold."""
    rng = np.random.default_rng(9)
    later = []
    for name in ("a", "b"):
        writer = StagingWriter(staging_dir(warehouse_path), name)
        writer.write_manifest(manifest(name))
        events = batch_events(rng, 0, [int(n) for n in rng.integers(1, 40, 6)])
        early = pa.compute.less(events["step"], 9)
        writer.write_batch(0, synthetic_samples(range(6)), events.filter(early))
        later.append((writer, events.filter(pa.compute.invert(early))))
    with duckdb_connection(warehouse_path) as con:
        ingest_pending(con, warehouse_path)
        for writer, rest in later:  # the samples' later steps, in a later ingest
            writer.write_batch(6, synthetic_samples(range(0)), rest)
        ingest_pending(con, warehouse_path)
        stages = [_moments_stored(con), _moments_counted(con)]
        delete_runs(con, [con.execute("SELECT max(run_id) FROM runs").fetchall()[0][0]])
        stages += [_moments_stored(con), _moments_counted(con)]
    assert warehouse_main(["--warehouse", str(warehouse_path), "rebuild-summaries"]) == 0
    with duckdb.connect(str(warehouse_path), read_only=True) as con:
        stages += [_moments_stored(con), _moments_counted(con)]
    for got, want in zip(stages[::2], stages[1::2], strict=True):
        assert got == {k: {c: pytest.approx(v, rel=1e-12) for c, v in row.items()} for k, row in want.items()}
    assert len(stages[0]) == 2 * (len(EARLY_WINDOWS) + 1) and len(stages[2]) == len(EARLY_WINDOWS) + 1
