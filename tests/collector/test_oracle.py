"""Oracle collection on tiny real models: tokens, System 1 predictions and CoF are right."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pytest
import torch

from collector.config import RunConfig
from collector.engine import run_collection
from collector.modeling import load_model
from tests.conftest import TinyModels

MAX_NEW = 12


def _events(path: Path) -> list[tuple]:
    with duckdb.connect(str(path), read_only=True) as con:
        return con.execute(
            "SELECT sample_id, step, token_id, s1_token_id, mismatch FROM token_events "
            "ORDER BY sample_id, step"
        ).fetchall()


def _llm_greedy(model_dir: Path, prompt: str) -> list[int]:
    m = load_model(str(model_dir), torch.device("cpu"), torch.float32)
    ids = m.tokenizer(prompt, return_tensors="pt", add_special_tokens=False)
    out = m.model.generate(
        **ids, max_new_tokens=MAX_NEW, do_sample=False, pad_token_id=m.tokenizer.pad_token_id
    )
    return out[0, ids["input_ids"].shape[1] :].tolist()


def _slm_stepwise_argmax(model_dir: Path, prompt: str, tokens: list[int]) -> list[int]:
    """System 1's argmax at each step, computed one token at a time with a KV cache."""
    m = load_model(str(model_dir), torch.device("cpu"), torch.float32)
    ids = m.tokenizer(prompt, return_tensors="pt", add_special_tokens=False)["input_ids"]
    out = m.model(input_ids=ids, use_cache=True)
    preds = [int(out.logits[0, -1].argmax())]
    cache = out.past_key_values
    for tok in tokens[:-1]:
        out = m.model(input_ids=torch.tensor([[tok]]), past_key_values=cache, use_cache=True)
        cache = out.past_key_values
        preds.append(int(out.logits[0, -1].argmax()))
    return preds


@pytest.fixture
def oracle_run(tiny_models: TinyModels, warehouse_path: Path, prompts_file: Path) -> Path:
    cfg = RunConfig(
        llm=str(tiny_models.llm),
        slm=str(tiny_models.slm),
        prompts=str(prompts_file),
        batch_size=4,
        max_new_tokens=MAX_NEW,
    )
    summary = run_collection(cfg, warehouse_path, progress=False)
    assert summary.status == "complete" and summary.run_id is not None
    return warehouse_path


def test_tokens_equal_llm_greedy_and_s1_equals_stepwise_slm(
    oracle_run: Path, tiny_models: TinyModels, prompts_file: Path
) -> None:
    prompts = [json.loads(line)["prompt"] for line in prompts_file.read_text().splitlines()]
    rows = _events(oracle_run)
    for sid, prompt in enumerate(prompts):
        tokens = [r[2] for r in rows if r[0] == sid]
        s1 = [r[3] for r in rows if r[0] == sid]
        expected = _llm_greedy(tiny_models.llm, prompt)
        assert tokens == expected[: len(tokens)] and len(tokens) > 0
        assert s1 == _slm_stepwise_argmax(tiny_models.slm, prompt, tokens)
        assert all(r[4] == (r[2] != r[3]) for r in rows if r[0] == sid)


def test_ingest_round_trip(oracle_run: Path, prompts_file: Path) -> None:
    with duckdb.connect(str(oracle_run), read_only=True) as con:
        n_prompts = len(prompts_file.read_text().splitlines())
        per_sample = con.execute(
            "SELECT s.sample_id, s.n_tokens, count(e.step) FROM samples s "
            "LEFT JOIN token_events e USING (run_id, sample_id) GROUP BY ALL ORDER BY 1"
        ).fetchall()
        assert len(per_sample) == n_prompts
        assert all(n == c and n > 0 for _, n, c in per_sample)
        status, tokens, cof = con.execute(
            "SELECT r.status, c.tokens, c.cof FROM runs r JOIN run_cof c USING (run_id)"
        ).fetchone()  # type: ignore[misc]
        assert status == "complete" and tokens == sum(n for _, n, _ in per_sample)
        assert 0.0 <= cof <= 1.0
        assert con.execute("SELECT count(*) FROM ingested_shards").fetchone() == (2,)
    assert not any((oracle_run.parent / "fsgen.duckdb.staging").glob("*/batch-*"))


def test_cof_of_a_model_with_itself_is_zero(
    tiny_models: TinyModels, warehouse_path: Path, prompts_file: Path
) -> None:
    cfg = RunConfig(
        llm=str(tiny_models.llm),
        slm=str(tiny_models.llm),
        prompts=str(prompts_file),
        batch_size=3,
        max_new_tokens=MAX_NEW,
    )
    summary = run_collection(cfg, warehouse_path, progress=False)
    assert summary.tokens > 0 and summary.mismatches == 0
    with duckdb.connect(str(warehouse_path), read_only=True) as con:
        assert con.execute("SELECT cof FROM run_cof").fetchone() == (0.0,)


def test_pair_cof_uses_counted_parameters(oracle_run: Path, tiny_models: TinyModels) -> None:
    with duckdb.connect(str(oracle_run), read_only=True) as con:
        llm_params, slm_params, ratio = con.execute(
            "SELECT llm_params, slm_params, param_ratio FROM pair_cof"
        ).fetchone()  # type: ignore[misc]
    llm = load_model(str(tiny_models.llm), torch.device("cpu"), torch.float32)
    assert llm_params == sum(p.numel() for p in llm.model.parameters())
    assert ratio == pytest.approx(llm_params / slm_params) and ratio > 1
