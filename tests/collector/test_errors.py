"""Bad input gets a clear error, a non-zero exit, and leaves no run that looks complete."""

from __future__ import annotations

import os
import re
import resource
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import duckdb
import numpy as np
import pytest
import torch

from bench.bench_ingest import manifest, synthetic_events, synthetic_samples
from collector.run import main
from tests.conftest import TinyModels
from warehouse.__main__ import main as warehouse_main
from warehouse.migrate import current_revision, downgrade, head_revision
from warehouse.quarantine import quarantined_shards
from warehouse.settings import staging_dir
from warehouse.staging import EVENTS_FILE, StagingWriter


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code = main(["--quiet", "--max-new-tokens", "4", *args])
    captured = capsys.readouterr()
    return code, " ".join((captured.out + captured.err).split())


def _complete_runs(path: Path) -> int:
    with duckdb.connect(str(path), read_only=True) as con:
        row = con.execute("SELECT count(*) FROM runs WHERE status = 'complete'").fetchone()
    return int(row[0]) if row else 0


def test_tokenizer_mismatch(
    capsys: pytest.CaptureFixture[str], tiny_models: TinyModels, warehouse_path: Path, prompts_file: Path
) -> None:
    code, out = _run(
        capsys,
        "--llm",
        str(tiny_models.llm),
        "--slm",
        str(tiny_models.foreign),
        "--prompts",
        str(prompts_file),
        "--warehouse",
        str(warehouse_path),
    )
    assert code == 2
    assert "tokenizers differ at id" in out and "pick models from one family" in out
    assert _complete_runs(warehouse_path) == 0


def test_missing_model_path(
    capsys: pytest.CaptureFixture[str], tiny_models: TinyModels, warehouse_path: Path, prompts_file: Path
) -> None:
    code, out = _run(
        capsys,
        "--llm",
        "./no/such/model",
        "--slm",
        str(tiny_models.slm),
        "--prompts",
        str(prompts_file),
        "--warehouse",
        str(warehouse_path),
    )
    assert code == 2
    assert "does not exist" in out and "zoo:<name>" in out
    assert _complete_runs(warehouse_path) == 0


def test_empty_prompts_file(
    capsys: pytest.CaptureFixture[str], tiny_models: TinyModels, warehouse_path: Path, tmp_path: Path
) -> None:
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    code, out = _run(
        capsys,
        "--llm",
        str(tiny_models.llm),
        "--slm",
        str(tiny_models.slm),
        "--prompts",
        str(empty),
        "--warehouse",
        str(warehouse_path),
    )
    assert code == 2 and "holds no prompts" in out
    assert _complete_runs(warehouse_path) == 0


def test_malformed_prompts_line(
    capsys: pytest.CaptureFixture[str], tiny_models: TinyModels, warehouse_path: Path, tmp_path: Path
) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "ok"}\n{"text": "no prompt field"}\n')
    code, out = _run(
        capsys,
        "--llm",
        str(tiny_models.llm),
        "--slm",
        str(tiny_models.slm),
        "--prompts",
        str(bad),
        "--warehouse",
        str(warehouse_path),
    )
    assert code == 2 and "line 2" in out and "'prompt'" in out


def test_warehouse_behind_head(
    capsys: pytest.CaptureFixture[str], tiny_models: TinyModels, warehouse_path: Path, prompts_file: Path
) -> None:
    downgrade(warehouse_path, "base")
    code, out = _run(
        capsys,
        "--llm",
        str(tiny_models.llm),
        "--slm",
        str(tiny_models.slm),
        "--prompts",
        str(prompts_file),
        "--warehouse",
        str(warehouse_path),
    )
    assert code == 2
    assert f"python -m warehouse upgrade --warehouse {warehouse_path}" in out


def test_missing_warehouse_is_created_at_head(
    capsys: pytest.CaptureFixture[str], tiny_models: TinyModels, tmp_path: Path, prompts_file: Path
) -> None:
    missing = tmp_path / "new" / "fresh.duckdb"
    code, out = _run(
        capsys,
        "--llm",
        str(tiny_models.llm),
        "--slm",
        str(tiny_models.slm),
        "--prompts",
        str(prompts_file),
        "--warehouse",
        str(missing),
    )
    assert code == 0 and f"created {missing} at schema revision {head_revision()}" in out
    assert current_revision(missing) == head_revision() and _complete_runs(missing) == 1


def test_an_over_long_prompt_is_refused_before_the_run_is_registered(
    tiny_models: TinyModels, warehouse_path: Path, tmp_path: Path
) -> None:
    """A prompt too long for the model is refused before anything is staged: no `failed` run is left; a
    prompt of megabytes is refused by its length in characters, without tokenizing it."""
    from collector.config import RunConfig
    from collector.engine import run_collection

    prompts = tmp_path / "long.jsonl"
    prompts.write_text('{"prompt": "short"}\n' + '{"prompt": "' + "1 2 " * 400 + '"}\n')
    cfg = RunConfig(
        llm=str(tiny_models.llm),
        slm=str(tiny_models.slm),
        prompts=str(prompts),
        batch_size=1,
        max_new_tokens=4,
    )
    with pytest.raises(ValueError, match=r"prompt 1 has \d+ tokens.*--truncate-prompt"):
        run_collection(cfg, warehouse_path, progress=False)
    huge = tmp_path / "huge.jsonl"
    huge.write_text('{"prompt": "short"}\n' + '{"prompt": "' + "x" * 5_000_000 + '"}\n')
    start = time.perf_counter()
    with pytest.raises(ValueError, match="prompt 1 has 5000000 characters"):
        run_collection(replace(cfg, prompts=str(huge)), warehouse_path, progress=False)
    assert time.perf_counter() - start < 20  # model loading included; tokenizing 5 MB alone takes longer
    with duckdb.connect(str(warehouse_path), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM runs").fetchall() == [(0,)]
    assert [p for p in staging_dir(warehouse_path).iterdir() if not p.name.startswith(".")] == []


def test_invalid_utf8_in_a_prompts_file_names_the_line_and_byte(
    tiny_models: TinyModels, warehouse_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    prompts = tmp_path / "latin1.jsonl"
    prompts.write_bytes(b'{"prompt": "fine"}\n{"prompt": "caf\xe9"}\n')
    code = main([*_models(tiny_models, warehouse_path), "--prompts", str(prompts), "--quiet"])
    out = capsys.readouterr().out
    assert code == 2 and "Traceback" not in out
    assert f"{prompts} line 2 is not valid UTF-8: byte 16 of the line is 0xe9" in " ".join(out.split())


# --- issue: faults and bad input -----------------------------------------------------------------------


def _models(tiny_models: TinyModels, warehouse: Path) -> list[str]:
    return ["--llm", str(tiny_models.llm), "--slm", str(tiny_models.slm), "--warehouse", str(warehouse)]


def _nothing_staged_or_complete(warehouse: Path) -> None:
    assert _complete_runs(warehouse) == 0
    assert not list(staging_dir(warehouse).glob("*/batch-*"))


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--samples", "0"], "--samples 0 must be at least 1"),
        (["--samples", "-1"], "--samples -1 must be at least 1"),
        (["--temperature", "nan"], "--temperature nan is not a finite number"),
        (["--temperature", "inf"], "--temperature inf is not a finite number"),
        (["--method", "contrastive", "--lambda", "nan"], "--lambda nan is not a finite number"),
        (["--router", "entropy", "--threshold", "nan"], "--threshold nan is not a finite number"),
        (["--top-p", "nan"], "--top-p nan is not a finite number"),
        (
            ["--no-calibrate", "--recalibrate"],
            "--recalibrate times the costs again, --no-calibrate records none",
        ),
    ],
)
def test_bad_numbers_are_refused_up_front(
    capsys: pytest.CaptureFixture[str],
    tiny_models: TinyModels,
    warehouse_path: Path,
    prompts_file: Path,
    flags: list[str],
    message: str,
) -> None:
    code, out = _run(capsys, *_models(tiny_models, warehouse_path), "--prompts", str(prompts_file), *flags)
    assert code == 2 and message in out
    _nothing_staged_or_complete(warehouse_path)


def test_samples_below_one_are_refused_for_datasets_too(
    capsys: pytest.CaptureFixture[str], tiny_models: TinyModels, warehouse_path: Path
) -> None:
    code, out = _run(
        capsys, *_models(tiny_models, warehouse_path), "--dataset", "builtin:arith", "--samples", "0"
    )
    assert code == 2 and "--samples 0 must be at least 1" in out
    _nothing_staged_or_complete(warehouse_path)


@pytest.mark.parametrize("stop", ['"eQ"', "5", '["ok", 3]', '[""]'])
def test_stop_must_be_a_list_of_strings(
    capsys: pytest.CaptureFixture[str],
    tiny_models: TinyModels,
    warehouse_path: Path,
    tmp_path: Path,
    stop: str,
) -> None:
    prompts = tmp_path / "stop.jsonl"
    prompts.write_text('{"prompt": "the"}\n{"prompt": "a b", "stop": ' + stop + "}\n")
    code, out = _run(capsys, *_models(tiny_models, warehouse_path), "--prompts", str(prompts))
    assert code == 2 and "line 2: 'stop' must be a list of non-empty strings" in out
    _nothing_staged_or_complete(warehouse_path)


@pytest.mark.parametrize(
    ("device", "message"),
    [("cuda:99", "this machine has"), ("banana", "is not a device name"), ("mps", "MPS is not available")],
)
def test_a_device_that_is_not_there_is_refused(
    capsys: pytest.CaptureFixture[str],
    tiny_models: TinyModels,
    warehouse_path: Path,
    prompts_file: Path,
    device: str,
    message: str,
) -> None:
    if device == "mps" and torch.backends.mps.is_available():
        pytest.skip("this machine has MPS")
    args = [*_models(tiny_models, warehouse_path), "--prompts", str(prompts_file), "--device", device]
    code, out = _run(capsys, *args)
    assert code == 2 and message in out and "--device cpu" in out
    _nothing_staged_or_complete(warehouse_path)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_without_cuda_is_refused(
    capsys: pytest.CaptureFixture[str], tiny_models: TinyModels, warehouse_path: Path, prompts_file: Path
) -> None:
    args = [*_models(tiny_models, warehouse_path), "--prompts", str(prompts_file), "--device", "cuda"]
    code, out = _run(capsys, *args)
    assert code == 2 and "this machine has no CUDA device" in out


@pytest.mark.parametrize("kind", ["garbage", "empty", "text", "folder"])
def test_a_warehouse_that_is_not_duckdb_is_refused(
    capsys: pytest.CaptureFixture[str], tiny_models: TinyModels, tmp_path: Path, prompts_file: Path, kind: str
) -> None:
    path = tmp_path / "bad.duckdb"
    if kind == "folder":
        path.mkdir()
    else:
        path.write_bytes({"garbage": os.urandom(5000), "empty": b"", "text": b"hello\n"}[kind])
    code, out = _run(capsys, *_models(tiny_models, path), "--prompts", str(prompts_file))
    assert code == 2 and "not an fsgen warehouse" in out and "python -m warehouse upgrade" in out
    assert not staging_dir(path).exists()
    for command in ("status", "upgrade", "ingest"):
        assert warehouse_main([command, "--warehouse", str(path)]) == 2
        assert "not an fsgen warehouse" in capsys.readouterr().err


def test_a_bad_shard_of_another_run_does_not_stop_a_collector(
    capsys: pytest.CaptureFixture[str], tiny_models: TinyModels, warehouse_path: Path, prompts_file: Path
) -> None:
    other = StagingWriter(staging_dir(warehouse_path), "other-run")
    other.write_manifest(replace(manifest("other-run"), n_samples=10))
    other.write_batch(0, synthetic_samples(range(10)), synthetic_events(1000, 0, np.random.default_rng(0)))
    with open(other.run_dir / "batch-00000000" / EVENTS_FILE, "r+b") as fh:
        fh.truncate(2000)
    args = [*_models(tiny_models, warehouse_path), "--prompts", str(prompts_file), "--batch-size", "2"]
    code, _ = _run(capsys, *args)
    assert code == 0 and _complete_runs(warehouse_path) == 1
    (bad,) = quarantined_shards(staging_dir(warehouse_path))
    assert bad.run_key == "other-run" and "truncated" in bad.reason


@contextmanager
def file_size_limit(limit: int) -> Iterator[None]:
    """A full disk, simulated: past `limit` bytes a write fails with EFBIG (the soft limit is restored)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # else the kernel kills the process
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, handler)


def test_a_full_disk_is_a_clear_error_and_leaves_no_temp_files(
    capsys: pytest.CaptureFixture[str], tiny_models: TinyModels, warehouse_path: Path, prompts_file: Path
) -> None:
    args = [*_models(tiny_models, warehouse_path), "--prompts", str(prompts_file), "--batch-size", "6"]
    with file_size_limit(8192):
        code, out = _run(capsys, *args, "--max-new-tokens", "48")
    assert code == 2 and "no space left to stage" in out and "--resume" in out, out
    staged = staging_dir(warehouse_path)
    assert not [p for p in staged.rglob("*") if p.name.startswith(".tmp-")]
    assert not list(staged.glob("*/batch-*")) and _complete_runs(warehouse_path) == 0
    with duckdb.connect(str(warehouse_path), read_only=True) as con:
        (run_id, status, error), *_ = con.execute("SELECT run_id, status, error FROM runs").fetchall()
    assert status == "failed" and "StagingFull" in error
    resume = ["--quiet", "--resume", str(run_id), "--warehouse", str(warehouse_path)]
    with file_size_limit(8192):  # still full
        assert main(resume) == 2
    assert "no space left to stage" in " ".join(capsys.readouterr().out.split())
    assert main(resume) == 0 and _complete_runs(warehouse_path) == 1  # space again


def test_an_internal_value_error_keeps_its_traceback(
    monkeypatch: pytest.MonkeyPatch, tiny_models: TinyModels, warehouse_path: Path, prompts_file: Path
) -> None:
    """Only UserError is printed as `error: ...`; a ValueError from a bug propagates with its traceback."""
    import collector.run

    def bug(*args: object, **kwargs: object) -> None:
        raise ValueError("an internal bug")

    monkeypatch.setattr(collector.run, "run_collection", bug)
    with pytest.raises(ValueError, match="an internal bug"):
        main(["--quiet", *_models(tiny_models, warehouse_path), "--prompts", str(prompts_file)])


HOLD = "import duckdb, time; c = duckdb.connect({path!r}); print('x', flush=True); time.sleep(60)"


def test_a_run_with_a_quarantined_shard_is_failed_until_resume_collects_it_again(
    capsys: pytest.CaptureFixture[str], tiny_models: TinyModels, warehouse_path: Path, prompts_file: Path
) -> None:
    holder = subprocess.Popen(  # holds the file, so the collector only stages its shards
        [sys.executable, "-c", HOLD.format(path=str(warehouse_path))], stdout=subprocess.PIPE
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == b"x"
        args = [*_models(tiny_models, warehouse_path), "--prompts", str(prompts_file), "--batch-size", "2"]
        assert _run(capsys, *args)[0] == 0
    finally:
        holder.kill()
        holder.wait()
    (run_dir,) = [d for d in staging_dir(warehouse_path).iterdir() if not d.name.startswith(".")]
    with open(run_dir / "batch-00000002" / EVENTS_FILE, "r+b") as fh:
        fh.truncate(500)
    assert warehouse_main(["ingest", "--warehouse", str(warehouse_path)]) == 0
    with duckdb.connect(str(warehouse_path), read_only=True) as con:
        assert con.execute("SELECT run_id, status FROM runs").fetchall() == [(1, "failed")]
        assert con.execute("SELECT list(sample_id ORDER BY sample_id) FROM samples").fetchall() == [
            ([0, 1, 4, 5],)
        ]
    assert _run(capsys, "--resume", "1", "--warehouse", str(warehouse_path))[0] == 0
    with duckdb.connect(str(warehouse_path), read_only=True) as con:
        assert con.execute("SELECT status, error FROM runs").fetchall() == [("complete", None)]
        assert con.execute("SELECT count(DISTINCT sample_id), count(*) FROM samples").fetchall() == [(6, 6)]
    assert warehouse_main(["status", "--warehouse", str(warehouse_path)]) == 0
    assert "nothing is missing any more" in capsys.readouterr().out


def test_swapped_pair_is_refused_with_both_counts(
    capsys: pytest.CaptureFixture[str], tiny_models: TinyModels, warehouse_path: Path, prompts_file: Path
) -> None:
    swapped = ("--llm", str(tiny_models.slm), "--slm", str(tiny_models.llm), "--prompts", str(prompts_file))
    code, out = _run(capsys, *swapped, "--samples", "2", "--warehouse", str(warehouse_path))
    assert code == 2
    found = re.search(r"has ([\d,]+) parameters, not more than .* with ([\d,]+);", out)
    assert found, out
    counts = [int(n.replace(",", "")) for n in found.groups()]
    assert counts[0] < counts[1]
    assert "swap --llm and --slm, or pass --allow-inverted" in out
    with duckdb.connect(str(warehouse_path), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM runs").fetchall()[0][0] == 0
    code, out = _run(capsys, *swapped, "--samples", "1", "--no-calibrate", "--warehouse", str(warehouse_path),
                     "--allow-inverted")  # fmt: skip
    assert code == 0
    with duckdb.connect(str(warehouse_path), read_only=True) as con:
        got = con.execute("SELECT name, params FROM models ORDER BY params").fetchall()
    assert [p for _, p in got] == sorted(counts)


@pytest.mark.parametrize("value", ["0", "-1", "two"])
def test_thread_counts_below_one_are_refused(capsys: pytest.CaptureFixture[str], value: str) -> None:
    from collector.sweep import main as sweep_main

    for entry, flag in ((main, "--threads"), (sweep_main, "--threads"), (sweep_main, "--num-cpus")):
        with pytest.raises(SystemExit) as stop:
            entry(["paper", "--dry-run", flag, value] if entry is sweep_main else [flag, value])
        err = capsys.readouterr().err
        assert stop.value.code == 2 and f"argument {flag}:" in err and "Traceback" not in err
        assert ("must be at least 1" if value != "two" else "is not a whole number") in err
