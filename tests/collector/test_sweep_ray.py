"""`--executor ray` on a real local Ray cluster: same warehouse as the local executor, killed workers retried.

Tiny cells (a zoo pair, a few one-sample batches of a few tokens) keep the whole file well under a minute
and a half on a busy two-core machine; most of it is Ray starting and its workers importing torch.
"""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import pytest
import ray  # the `ray` extra, which `make test` installs
import torch
from rich.console import Console

from collector.sweep import main
from collector.sweeps.local import run_local
from collector.sweeps.ray_executor import CellEvent, from_ipc, run_ray, to_ipc
from collector.sweeps.spec import plan
from warehouse.migrate import upgrade

pytestmark = pytest.mark.timeout(300)  # a wedged cluster fails the file instead of stalling the suite

SPEC = {
    "pairs": [["zoo:zoo-s", "zoo:zoo-xs"]],
    "methods": ["oracle", "contrastive"],
    "datasets": ["builtin:arith"],
    "samples": 6,
    "batch_size": 1,  # six batches: a kill after the first lands mid-cell
    "max_new_tokens": 6,
}


@pytest.fixture(scope="module")
def cluster() -> Iterator[None]:
    """A real local Ray cluster of two CPUs for this file."""
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def local_warehouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sweep run by the local executor, in this process on one thread."""
    path = tmp_path_factory.mktemp("local") / "local.duckdb"
    upgrade(path)
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        outcomes = run_local(plan(SPEC).cells, path, Console(quiet=True))
    finally:
        torch.set_num_threads(before)
    assert [o.action for o in outcomes] == ["ran", "ran"]
    return path


def contents(path: Path) -> dict[str, Any]:
    """Each run (by its settings): status, samples, every sample's token ids in order, its cost kinds."""
    with duckdb.connect(str(path), read_only=True) as con:
        runs = con.execute("SELECT run_id, settings, status FROM runs").fetchall()
        out = {}
        for run_id, settings, status in runs:
            samples = con.execute(
                "SELECT sample_id, item_id, output, n_tokens, stop_reason, correct FROM samples "
                "WHERE run_id = ? ORDER BY sample_id",
                [run_id],
            ).fetchall()
            tokens = con.execute(
                "SELECT sample_id, list(token_id ORDER BY step), list(s1_token_id ORDER BY step), "
                "count(*), count(DISTINCT step) FROM token_events WHERE run_id = ? "
                "GROUP BY sample_id ORDER BY sample_id",
                [run_id],
            ).fetchall()
            costs = con.execute(
                "SELECT kind FROM run_costs WHERE run_id = ? ORDER BY kind", [run_id]
            ).fetchall()
            out[json.dumps(json.loads(settings), sort_keys=True)] = (status, samples, tokens, costs)
    return out


class Killer:
    """Kills the worker of cell `index` (SIGKILL) when its first batch reaches the driver."""

    def __init__(self, index: int) -> None:
        self.index, self.killed, self.pids = index, None, list[int]()

    def __call__(self, event: CellEvent) -> None:
        if event.index != self.index or event.kind != "batch" or event.pid is None:
            return
        self.pids.append(event.pid)
        if self.killed is None:
            os.kill(event.pid, signal.SIGKILL)
            self.killed = event.pid


def test_arrow_ipc_round_trip() -> None:
    import pyarrow as pa

    table = pa.table({"sample_id": pa.array([1, 2], pa.int32()), "output": ["a", None]})
    assert from_ipc(to_ipc(table)).equals(table)


def test_a_killed_worker_is_retried_and_the_warehouse_equals_the_local_one(
    cluster: None, local_warehouse: Path, tmp_path: Path
) -> None:
    path = tmp_path / "ray.duckdb"
    upgrade(path)
    killer = Killer(index=2)
    console = Console(record=True, width=200)
    outcomes = run_ray(plan(SPEC).cells, path, console, observer=killer)
    assert [o.action for o in outcomes] == ["ran", "ran"], console.export_text()
    assert killer.killed is not None
    with pytest.raises(ProcessLookupError):
        os.kill(killer.killed, 0)  # the worker really died ...
    assert killer.pids[-1] != killer.killed  # ... and a new one finished the cell
    got, want = contents(path), contents(local_warehouse)
    assert got == want  # same runs, samples and token ids; one event per (sample, step)
    assert all(n == steps for _, _, tokens, _ in got.values() for *_, n, steps in tokens)
    text = console.export_text()
    assert "[ray] 0 queued · 0 running · 2 done · 0 failed" in text and "2 ran, 0 resumed" in text


class Interrupt:
    """Stops the driver (as Ctrl-C would) when the first batch of cell `index` is staged."""

    def __init__(self, index: int) -> None:
        self.index = index

    def __call__(self, event: CellEvent) -> None:
        if event.index == self.index and event.kind == "batch":
            raise KeyboardInterrupt


def test_an_interrupted_sweep_resumes_like_a_local_one_and_a_bad_cell_fails(
    cluster: None, local_warehouse: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "ray.duckdb"
    upgrade(path)
    with pytest.raises(KeyboardInterrupt):
        run_ray(plan({**SPEC, "methods": ["oracle"]}).cells, path, Console(quiet=True), observer=Interrupt(1))
    (status, samples, *_), *_ = contents(path).values()
    assert status == "running" and 1 <= len(samples) < 6  # the batches before the stop are committed
    config = tmp_path / "sweep.toml"
    missing = tmp_path / "no.jsonl"
    # a sweep's experiment is its file's stem unless it names one: this one continues the run above's
    config.write_text(
        'pairs = [["zoo:zoo-s", "zoo:zoo-xs"]]\nmethods = ["oracle"]\nsamples = 6\nbatch_size = 1\n'
        'experiment = "default"\n'
        f'max_new_tokens = 6\ndatasets = ["builtin:arith", {{name = "gsm8k", path = "{missing}"}}]\n'
    )
    assert main([str(config), "--warehouse", str(path), "--executor", "ray"]) == 1  # a cell failed
    out = capsys.readouterr().out
    assert "0 ran, 1 resumed, 0 skipped, 1 failed" in out and "gsm8k data not found" in out
    (run,) = contents(path).items()
    assert run == next(item for item in contents(local_warehouse).items() if '"method": "oracle"' in item[0])
