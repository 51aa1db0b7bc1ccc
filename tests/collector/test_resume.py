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
import httpx
import pytest

from api.process import api_process
from bench.bench_ingest import manifest
from collector import engine
from collector.config import RunConfig
from collector.engine import run_collection
from collector.run import main as run_main
from tests.collector.helpers import one_thread  # noqa: F401  (fixture)
from tests.conftest import TinyModels
from warehouse.__main__ import main as warehouse_main
from warehouse.ingest import try_ingest
from warehouse.liveness import run_liveness
from warehouse.settings import staging_dir
from warehouse.staging import (
    EVENTS_FILE,
    FINAL,
    RunFinal,
    StagingWriter,
    lock_holder,
    staged_sample_ids,
)

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


def _kill_after_first_batch(cmd: list[str], warehouse: Path, timeout: float = 300.0) -> None:
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


def _assert_same_events(a: list[tuple[object, ...]], b: list[tuple[object, ...]]) -> None:
    """Ids, tokens and flags exactly; fp32 figures up to rounding: with continuous batching a resumed row
    decodes beside other rows than it would have (`collector.decode.refill`): another summation order."""
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        assert [v for v in x if not isinstance(v, float)] == [v for v in y if not isinstance(v, float)]
        floats = [v for v in x if isinstance(v, float)]
        assert [v for v in y if isinstance(v, float)] == pytest.approx(floats, rel=1e-5, abs=1e-6)


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
    # the run's folder; its `<key>.lock` file sits beside it
    (key,) = [
        d.name for d in staging_dir(warehouse_path).iterdir() if d.is_dir() and not d.name.startswith(".")
    ]
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
    _assert_same_events(resumed_events, _events(warehouse_path, reference_id))
    assert len(resumed_events) > 10
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


def _fail_at_batch(monkeypatch: pytest.MonkeyPatch, n: int) -> None:
    """The collector dies while computing batch `n` (as a SIGKILL or an error would stop it)."""
    write_batch, calls = engine._write_batch, [0]

    def dies(*args: object, **kwargs: object) -> object:
        calls[0] += 1
        if calls[0] == n:
            raise _Killed
        return write_batch(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(engine, "_write_batch", dies)


def _prompts(tmp_path: Path, n: int) -> Path:
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": t}) + "\n" for t in TEXTS[:n]))
    return prompts


def _hold(path: Path) -> subprocess.Popen[bytes]:
    code = (
        "import duckdb, sys, time; c = duckdb.connect(sys.argv[1]); print('x', flush=True); time.sleep(600)"
    )
    proc = subprocess.Popen([sys.executable, "-c", code, str(path)], stdout=subprocess.PIPE)
    assert proc.stdout is not None and proc.stdout.readline().strip() == b"x"
    return proc


COMMIT_TO_WAL_ONLY = (
    "import os, sys, duckdb; from pathlib import Path; from warehouse.ingest import ingest_run_dir; "
    "con = duckdb.connect(sys.argv[1]); con.execute(\"SET checkpoint_threshold = '1TB'\"); "
    "ingest_run_dir(con, Path(sys.argv[2])); os._exit(0)"
)


def test_a_deleted_wal_is_detected_and_resume_collects_the_lost_samples(
    tiny_models: TinyModels,
    warehouse_path: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Shard 1 is checkpointed into the file, shard 2 committed to the write-ahead log only (a real process
    that dies before its checkpoint); the log is deleted. The ledger and the run's written list disagree:
    `warehouse status` names the lost samples with the command, and `--resume` collects them again."""
    cfg = RunConfig(
        llm=str(tiny_models.llm), slm=str(tiny_models.slm), prompts=str(_prompts(tmp_path, 6)),
        batch_size=2, max_new_tokens=8, calibrate=False,
    )  # fmt: skip
    holder = _hold(warehouse_path)  # the collector only stages
    _fail_at_batch(monkeypatch, 3)
    try:
        with pytest.raises(_Killed):
            run_collection(cfg, warehouse_path, progress=False)
    finally:
        holder.kill()
        holder.wait()
    monkeypatch.undo()
    (run_dir,) = [d for d in staging_dir(warehouse_path).iterdir() if d.is_dir()]
    (run_dir / FINAL).unlink()  # what a SIGKILL leaves: no final record
    second, aside = run_dir / "batch-00000002", tmp_path / "aside"
    os.replace(second, aside)
    try_ingest(warehouse_path)  # shard 1, checkpointed
    os.replace(aside, second)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    subprocess.run([sys.executable, "-c", COMMIT_TO_WAL_ONLY, str(warehouse_path), str(run_dir)], env=env)
    Path(f"{warehouse_path}.wal").unlink()
    assert not second.exists()  # it was committed, so removed from staging

    capsys.readouterr()
    assert warehouse_main(["status", "--warehouse", str(warehouse_path)]) == 1
    out = capsys.readouterr().out
    assert (
        f"run 1 ({run_dir.name}): 2 sample(s) were staged and ingested but are not in the file (ids 2-3)"
        in (" ".join(out.split()))
    )
    assert f"python -m collector.run --resume 1 --warehouse {warehouse_path}" in out
    assert run_main(["--resume", "1", "--warehouse", str(warehouse_path), "--quiet"]) == 0
    assert "2 sample(s) were ingested once but are not in" in " ".join(capsys.readouterr().out.split())
    reference = run_collection(cfg, warehouse_path, progress=False)
    with duckdb.connect(str(warehouse_path), read_only=True) as con:
        status = con.execute("SELECT status, error FROM runs WHERE run_id = 1").fetchone()
    assert status == ("complete", None)
    _assert_same_events(_events(warehouse_path, 1), _events(warehouse_path, reference.run_id or -1))


def _synthetic_failed_run(warehouse: Path, config: RunConfig, key: str) -> None:
    """A run recorded with `config`'s settings that ended failed with nothing collected (no model runs)."""
    writer = StagingWriter(staging_dir(warehouse), key)
    writer.write_manifest(replace(manifest(key), n_samples=4, settings=config.settings()))
    writer.write_final(RunFinal("failed", "2026-01-01T00:00:00", 1.0, 1.0, error="killed"))
    try_ingest(warehouse)


def test_resume_refuses_flags_that_change_the_run_and_one_resume_runs_at_a_time(
    warehouse_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = RunConfig(llm="zoo:zoo-s", slm="zoo:zoo-xs", prompts=str(_prompts(tmp_path, 4)))
    _synthetic_failed_run(warehouse_path, cfg, "run-r")
    where = ["--warehouse", str(warehouse_path)]
    flags = ["--llm", "zoo:zoo-l", "--method", "speculative", "--samples", "4", "--slm", "zoo:zoo-xs"]
    assert run_main(["--resume", "1", *flags, *where, "--threads", "1", "--quiet"]) == 2
    out = " ".join(capsys.readouterr().out.split())
    assert (
        "--llm zoo:zoo-l (recorded: zoo:zoo-s); --method speculative (recorded: oracle); --samples 4 " in out
    )
    assert "--slm" not in out.split("A resumed run")[0]  # the recorded value, given again, is no conflict
    assert "only --threads, --quiet, --device, --device-map may change" in out

    code = (
        "import sys, time; from pathlib import Path; from warehouse.staging import run_lock; "
        "lock = run_lock(Path(sys.argv[1]), 'run-r'); lock.__enter__(); print('x', flush=True); "
        "time.sleep(99)"
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", code, str(staging_dir(warehouse_path))], stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == b"x"
        assert run_main(["--resume", "run-r", *where, "--quiet"]) == 2
        out = " ".join(capsys.readouterr().out.split())
        assert f"run run-r is being collected by PID {holder.pid} on " in out
        assert lock_holder(staging_dir(warehouse_path), "run-r") is not None
    finally:
        holder.kill()
        holder.wait()
    assert lock_holder(staging_dir(warehouse_path), "run-r") is None  # the kernel let go at its death


def test_a_failed_run_resumes_by_id_while_the_api_holds_the_file(
    tiny_models: TinyModels, warehouse_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The API server holds the file: the resume finds the run's key and settings in its kept staging
    folder (its id recorded there by the ingester), stages the missing samples, and the API ingests them."""
    cfg = RunConfig(
        llm=str(tiny_models.llm), slm=str(tiny_models.slm), prompts=str(_prompts(tmp_path, 4)),
        batch_size=2, max_new_tokens=6, calibrate=False,
    )  # fmt: skip
    _fail_at_batch(monkeypatch, 2)
    with pytest.raises(_Killed):
        run_collection(cfg, warehouse_path, progress=False)
    monkeypatch.undo()
    with api_process(warehouse_path, env={"FSGEN_INGEST_INTERVAL_S": "0.2"}) as (base, _):
        assert run_main(["--resume", "1", "--warehouse", str(warehouse_path), "--quiet"]) == 0
        deadline = time.monotonic() + 60
        while (run := httpx.get(f"{base}/v1/runs/1", timeout=10).json())["status"] != "complete":
            assert time.monotonic() < deadline, run
            time.sleep(0.2)
        samples = httpx.get(f"{base}/v1/runs/1/samples", timeout=10).json()["data"]
    assert sorted(s["sample_id"] for s in samples) == [0, 1, 2, 3]
    assert not (staging_dir(warehouse_path) / run["run_key"]).exists()


def test_like_starts_a_new_run_with_a_recorded_runs_settings_but_the_flags_given(
    tiny_models: TinyModels, warehouse_path: Path, prompts_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--like RUN` (what the advisor's --verify runs): every recorded setting, the flags written replace."""
    cfg = RunConfig(
        llm=str(tiny_models.llm), slm=str(tiny_models.slm), prompts=str(prompts_file), samples=2,
        max_new_tokens=3, shots=1, chat_template="off", seed=5, calibrate=False, experiment="x",
    )  # fmt: skip
    run_collection(cfg, warehouse_path, progress=False)
    where = ["--warehouse", str(warehouse_path), "--quiet"]
    assert run_main(["--like", "1", "--method", "contrastive", "--lambda", "0.7", *where]) == 0
    with duckdb.connect(str(warehouse_path), read_only=True) as con:
        rows = con.execute("SELECT run_id, settings FROM runs ORDER BY run_id").fetchall()
    assert [r[0] for r in rows] == [1, 2]
    first, second = (json.loads(r[1]) for r in rows)
    assert second == {**first, "method": "contrastive", "lam": 0.7}
    assert run_main(["--like", "1", "--resume", "1", *where]) == 2
    assert "leave out --like" in capsys.readouterr().out
