"""A collector killed with SIGKILL mid-run, then resumed, holds exactly the events of an uninterrupted run.

The killed run is a real `python -m collector.run` subprocess on tiny models, killed as soon as a first
finished batch is staged or ingested (so it dies while computing or ingesting a later batch); the resume goes
through the same CLI entry (`--resume RUN`, in this process); the reference is the same config run in one go.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import duckdb
import pytest

from collector import engine
from collector.config import RunConfig
from collector.engine import run_collection
from collector.run import main as run_main
from tests.collector.helpers import one_thread  # noqa: F401  (fixture)
from tests.conftest import TinyModels
from warehouse.liveness import run_liveness
from warehouse.settings import staging_dir
from warehouse.staging import EVENTS_FILE, FINAL, staged_sample_ids

pytestmark = pytest.mark.usefixtures("one_thread")
ROOT = Path(__file__).resolve().parents[2]
TEXTS = [
    "the quick brown",
    "question: what is two",
    "def add(a",
    "numbers 0 1 2",
    "the",
    "letters a b c d",
    "jumps over the lazy",
    "answer: five",
    "return a + b",
    "over the",
]
EVENT_COLUMNS = (
    "sample_id, step, token_id, s1_token_id, s1_prob, s1_entropy, s1_margin, s2_token_id, llm_token_id, "
    "llm_prob, llm_entropy, llm_prob_s1_token, consulted, mismatch, rel_pos, draft_index, accepted"
)


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "collector.run", *args, "--quiet"]


def _env() -> dict[str, str]:
    # One thread, as in this process: the reference run must compute with the same float reductions.
    return {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", "PYTHONPATH": str(ROOT)}


def _committed(warehouse: Path) -> int:
    """Samples in shards staged or ingested so far (ingested ones count 0 while the file is busy)."""
    staged = sum(len(staged_sample_ids(d)) for d in staging_dir(warehouse).glob("*") if d.is_dir())
    try:
        with duckdb.connect(str(warehouse), read_only=True) as con:
            row = con.execute("SELECT count(*) FROM samples").fetchone()
            return staged + (int(row[0]) if row else 0)
    except duckdb.Error:  # the collector holds the file right now
        return staged


def _kill_after_first_batch(cmd: list[str], warehouse: Path, timeout: float = 120.0) -> None:
    proc = subprocess.Popen(cmd, cwd=ROOT, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + timeout
    try:
        while _committed(warehouse) == 0:
            assert proc.poll() is None, f"collector ended before it could be killed: {proc.stdout.read()!r}"  # type: ignore[union-attr]
            assert time.monotonic() < deadline, "no batch was committed in time"
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL


def _run_ref(warehouse: Path) -> str:
    """The killed run's id if the warehouse has it, else its key in staging (both resume)."""
    keys = [d.name for d in staging_dir(warehouse).glob("*") if d.is_dir() and not d.name.startswith(".")]
    assert len(keys) == 1 and not (staging_dir(warehouse) / keys[0] / FINAL).exists()
    with duckdb.connect(str(warehouse), read_only=True) as con:
        row = con.execute("SELECT run_id FROM runs WHERE run_key = ?", [keys[0]]).fetchall()
    return str(row[0][0]) if row else keys[0]


def _events(warehouse: Path, run_id: int) -> list[tuple[object, ...]]:
    with duckdb.connect(str(warehouse), read_only=True) as con:
        return con.execute(
            f"SELECT {EVENT_COLUMNS} FROM token_events WHERE run_id = ? ORDER BY sample_id, step", [run_id]
        ).fetchall()


def _cycles(warehouse: Path, run_id: int) -> list[tuple[object, ...]]:
    with duckdb.connect(str(warehouse), read_only=True) as con:
        return con.execute(
            "SELECT sample_id, cycle, drafted, accepted FROM spec_cycles WHERE run_id = ? ORDER BY 1, 2",
            [run_id],
        ).fetchall()


@pytest.mark.slow
@pytest.mark.parametrize("method", ["oracle", "speculative"])
def test_resume_after_sigkill_equals_an_uninterrupted_run(
    tiny_models: TinyModels, warehouse_path: Path, tmp_path: Path, method: str
) -> None:
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": t}) + "\n" for t in TEXTS))
    cfg = RunConfig(
        llm=str(tiny_models.llm), slm=str(tiny_models.slm), prompts=str(prompts), method=method,
        batch_size=2, max_new_tokens=32, draft_k=3,
    )  # fmt: skip
    args = ["--llm", cfg.llm, "--slm", cfg.slm, "--prompts", cfg.prompts or "", "--method", method]
    args += [
        "--batch-size",
        "2",
        "--max-new-tokens",
        "32",
        "--draft-k",
        "3",
        "--warehouse",
        str(warehouse_path),
    ]

    _kill_after_first_batch(_cli(*args), warehouse_path)
    assert 0 < _committed(warehouse_path) < len(TEXTS)  # killed mid-run
    ref = _run_ref(warehouse_path)
    (key,) = [d.name for d in staging_dir(warehouse_path).iterdir() if not d.name.startswith(".")]
    assert run_liveness(warehouse_path, key).state == "stale"  # the killed collector's PID is gone
    assert run_main(["--resume", ref, "--warehouse", str(warehouse_path), "--quiet"]) == 0

    reference = run_collection(replace(cfg), warehouse_path, progress=False)
    with duckdb.connect(str(warehouse_path), read_only=True) as con:
        runs = con.execute("SELECT run_id, status, n_samples FROM runs ORDER BY run_id").fetchall()
        per_run = con.execute("SELECT run_id, count(*) FROM samples GROUP BY 1 ORDER BY 1").fetchall()
    assert [r[1] for r in runs] == ["complete", "complete"]
    resumed_id, reference_id = runs[0][0], runs[1][0]
    assert reference.run_id == reference_id and per_run == [(resumed_id, 10), (reference_id, 10)]
    resumed_events = _events(warehouse_path, resumed_id)
    assert resumed_events == _events(warehouse_path, reference_id) and len(resumed_events) > 10
    assert _cycles(warehouse_path, resumed_id) == _cycles(warehouse_path, reference_id)
    assert not any(staging_dir(warehouse_path).glob("*/batch-*"))


class _Killed(RuntimeError):
    pass


def test_sampled_run_resumes_to_the_same_draws_past_a_half_removed_shard(
    tiny_models: TinyModels, warehouse_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each batch draws from its own seeded generator, so a resumed sampled run equals an uninterrupted one;
    a shard that lost its samples file while being removed after its ingest does not stop the resume."""
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": t}) + "\n" for t in TEXTS[:6]))
    cfg = RunConfig(
        llm=str(tiny_models.llm), slm=str(tiny_models.slm), prompts=str(prompts), method="contrastive",
        batch_size=2, max_new_tokens=10, temperature=0.05, top_p=0.95, seed=3,
    )  # fmt: skip
    write_batch, calls = engine._write_batch, [0]

    def dies_on_second_batch(*args: object, **kwargs: object) -> object:
        calls[0] += 1
        if calls[0] == 2:
            raise _Killed
        return write_batch(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(engine, "_write_batch", dies_on_second_batch)
    with pytest.raises(_Killed):
        run_collection(cfg, warehouse_path, progress=False)
    monkeypatch.setattr(engine, "_write_batch", write_batch)
    with duckdb.connect(str(warehouse_path), read_only=True) as con:
        run_id, run_key, status = con.execute("SELECT run_id, run_key, status FROM runs").fetchall()[0]
    assert status == "failed"
    half_removed = staging_dir(warehouse_path) / run_key / "batch-00000000"
    half_removed.mkdir(parents=True)
    (half_removed / EVENTS_FILE).write_bytes(b"left over")

    assert run_main(["--resume", str(run_id), "--warehouse", str(warehouse_path), "--quiet"]) == 0
    reference = run_collection(cfg, warehouse_path, progress=False)
    assert _events(warehouse_path, run_id) == _events(warehouse_path, reference.run_id or -1)
    assert not half_removed.exists()
