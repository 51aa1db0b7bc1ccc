"""`python -m analytics.advise --emit vllm|hf|llama.cpp`: settings checked against each engine's schema;
the HF ones run through transformers' own `generate` and reproduce the LLM's greedy output."""

from __future__ import annotations

import json
import re
from pathlib import Path

import duckdb
import numpy as np
import polars as pl
import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

from analytics.advise import main
from analytics.emit import batch_ranges
from tests.analytics.conftest import add_events, add_run
from tests.conftest import TinyModels
from warehouse.migrate import upgrade

# vLLM SpeculativeConfig fields (docs v0.25 draft_model page; num_speculative_tokens_per_batch_size from
# PR #32374); llama-server's speculative flags (common/arg.cpp).
VLLM_FIELDS = {"method", "model", "num_speculative_tokens", "num_speculative_tokens_per_batch_size"}
LLAMA_FLAGS = {"--model-draft", "--draft-max", "--draft-min", "--draft-p-min"}


def _warehouse(path: Path, models: TinyModels, batch_sizes: tuple[int, ...]) -> None:
    """A greedy oracle run of the tiny pair: matches mostly, System 1 unsure before each miss; costs
    timed at `batch_sizes` (cycles cost more per draft token as the batch grows)."""
    upgrade(path)
    rng = np.random.default_rng(0)
    n, length = 6, 40
    miss = rng.random(n * length) < 0.12
    prob = np.where(np.roll(miss, -1) | miss, 0.35, 0.95).astype(np.float32)
    events = pl.DataFrame({
        "sample_id": np.repeat(np.arange(n), length).astype(np.int32),
        "step": np.tile(np.arange(length), n).astype(np.int32), "mismatch": miss, "s1_prob": prob,
        "token_id": np.where(miss, 1, 0).astype(np.int32),
    })  # fmt: skip
    with duckdb.connect(str(path)) as con:
        for name, p in (("L", models.llm), ("S", models.slm)):
            con.execute(
                "INSERT INTO models (name, path, params, created_at) VALUES (?, ?, 1, now())", [name, str(p)]
            )
        run = add_run(con, llm="L", slm="S", dataset="d")
        add_events(con, run, events)
        rows = [(run, "prefill", 0, 1, 0.001), (run, "llm_generate", 1000, 1, 1.0)]
        for b in batch_sizes:
            per_token = 0.0002 * b  # drafting gets dearer with the batch: the best K falls
            rows += [(run, "cycle", d, b, 0.001 * b + per_token * d) for d in (1, 2, 4, 8)]
            rows += [(run, "stop_cycle", d, b, 0.001 * b + per_token * d) for d in (2, 4, 8) if b == 1]
            if b > 1:
                rows.append((run, "llm_generate", 1000 * b, b, 1.0 * b / (1 + 0.1 * b)))
        con.executemany(
            "INSERT INTO run_costs (run_id, kind, tokens, batch_size, seconds) VALUES (?, ?, ?, ?, ?)", rows
        )


def _emit(path: Path, engine: str, capsys: pytest.CaptureFixture[str]) -> tuple[str, str]:
    assert main(["--warehouse", str(path), "--emit", engine]) == 0
    out = capsys.readouterr()
    return out.out, out.err


def test_vllm_config_has_documented_fields_and_batch_ranges(
    tiny_models: TinyModels, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "w.duckdb"
    _warehouse(path, tiny_models, (1, 4, 16, 64))
    text, note = _emit(path, "vllm", capsys)
    config = json.loads(text)
    assert set(config) == VLLM_FIELDS and config["method"] == "draft_model"
    assert config["model"] == str(tiny_models.slm) and "batch sizes 1, 4, 16, 64" in note
    ranges = config["num_speculative_tokens_per_batch_size"]
    bounds = [tuple(map(int, re.fullmatch(r"(\d+)-(\d+)", key).groups())) for key in ranges]  # type: ignore[union-attr]
    assert bounds == [(1, 3), (4, 15), (16, 63), (64, 64)]  # inclusive, contiguous, in order
    ks = list(ranges.values())
    assert all(0 <= k <= config["num_speculative_tokens"] for k in ks) and ks == sorted(ks, reverse=True)
    assert batch_ranges({1: (3, 2.0)}) == {"1-1": 3}
    only_one = tmp_path / "one.duckdb"  # batch-1 costs only: a fixed K, said so
    _warehouse(only_one, tiny_models, (1,))
    text, note = _emit(only_one, "vllm", capsys)
    assert set(json.loads(text)) == VLLM_FIELDS - {"num_speculative_tokens_per_batch_size"}
    assert "no other batch size measured" in note


def test_hf_settings_run_in_generate_and_keep_the_greedy_output(
    tiny_models: TinyModels, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "w.duckdb"
    _warehouse(path, tiny_models, (1,))
    kwargs = json.loads(_emit(path, "hf", capsys)[0])
    assert kwargs["num_assistant_tokens_schedule"] == "constant" and kwargs["num_assistant_tokens"] >= 1
    assert 0 <= kwargs["assistant_confidence_threshold"] < 1
    draft = kwargs.pop("assistant_model")
    GenerationConfig(**kwargs).validate(strict=True)  # transformers' own check of the keys and values
    tok = AutoTokenizer.from_pretrained(tiny_models.llm)
    llm = AutoModelForCausalLM.from_pretrained(tiny_models.llm)
    assistant = AutoModelForCausalLM.from_pretrained(draft)
    for prompt in ("the quick brown", "numbers 0 1 2"):
        ids = tok(prompt, return_tensors="pt")
        with torch.inference_mode():
            greedy = llm.generate(**ids, max_new_tokens=12, do_sample=False, pad_token_id=tok.eos_token_id)
            assisted = llm.generate(**ids, max_new_tokens=12, do_sample=False, pad_token_id=tok.eos_token_id,
                                    assistant_model=assistant, **kwargs)  # fmt: skip
        assert assisted.tolist() == greedy.tolist()


def test_llama_cpp_flags_and_a_clear_error_when_ambiguous(
    tiny_models: TinyModels, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "w.duckdb"
    _warehouse(path, tiny_models, (1,))
    line = _emit(path, "llama.cpp", capsys)[0].split()
    flags = dict(zip(line[::2], line[1::2], strict=True))
    assert set(flags) == LLAMA_FLAGS and int(flags["--draft-max"]) >= int(flags["--draft-min"]) >= 1
    assert 0 <= float(flags["--draft-p-min"]) < 1
    assert main(["--warehouse", str(path), "--emit", "hf", "--llm", "nobody"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--llm L --dataset d" in err
