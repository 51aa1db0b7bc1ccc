"""The lock-step engine on tiny real models: batch invariance, stopping, LLM figures on every token,
seeded and coupled sampling, no per-token host synchronisation, and the warehouse round trip."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pytest
import torch

from collector.config import RunConfig
from collector.decode import batch_collector
from collector.decode.lockstep import CHECK_EVERY, collect_lockstep_batch
from collector.decode.oracle import collect_oracle_batch
from collector.engine import run_collection
from tests.collector.helpers import (
    PROMPTS,
    assert_events_equal,
    collect_events,
    context,
    one_thread,  # noqa: F401  (fixture)
    tokens_by_sample,
)
from tests.conftest import TinyModels

MAX_NEW = 12
pytestmark = pytest.mark.usefixtures("one_thread")


def _config(models: TinyModels, **kw: Any) -> RunConfig:
    base = RunConfig(llm=str(models.llm), slm=str(models.slm), prompts="unused", max_new_tokens=MAX_NEW)
    return replace(base, **kw)


@pytest.mark.parametrize(
    "kw",
    [
        {"method": "contrastive"},
        {"method": "oracle", "router": "max_prob", "threshold": 0.00427},
        {"method": "oracle"},  # the fast path
    ],
    ids=["contrastive", "oracle-max_prob", "oracle-fast-path"],
)
def test_batch_1_and_8_give_the_same_events(tiny_models: TinyModels, kw: dict[str, Any]) -> None:
    cfg = _config(tiny_models, **kw)
    ctx, collect = context(cfg), batch_collector(cfg)
    assert_events_equal(collect_events(ctx, collect, PROMPTS, 1), collect_events(ctx, collect, PROMPTS, 8))


def test_llm_figures_are_recorded_for_every_token(tiny_models: TinyModels) -> None:
    """Even where System 2 is never consulted, each event holds the LLM's argmax given the emitted prefix."""
    ctx = context(_config(tiny_models, router="never"))
    events = collect_events(ctx, collect_lockstep_batch, PROMPTS[:3], 3)
    tok, model = ctx.llm.tokenizer, ctx.llm.model
    for sid, emitted in tokens_by_sample(events).items():
        prompt = tok(PROMPTS[sid], add_special_tokens=False)["input_ids"]
        with torch.inference_mode():
            logits = model(input_ids=torch.tensor([prompt + emitted])).logits[0, len(prompt) - 1 : -1]
        rows = np.asarray(events.column("sample_id")) == sid
        np.testing.assert_array_equal(
            np.asarray(events.column("llm_token_id"))[rows], logits.argmax(-1).numpy()
        )
        probs = torch.softmax(logits[:, : ctx.vocab], -1).max(-1).values.numpy()
        np.testing.assert_allclose(np.asarray(events.column("llm_prob"))[rows], probs, rtol=1e-4)


def test_eos_and_stop_strings_cut_like_the_oracle_path(tiny_models: TinyModels) -> None:
    ctx = context(_config(tiny_models))
    plain = tokens_by_sample(collect_events(ctx, collect_oracle_batch, PROMPTS, 8))
    common = int(np.bincount(np.concatenate([v[2:] for v in plain.values()])).argmax())
    tok = ctx.llm.tokenizer.__class__.from_pretrained(ctx.llm.path)
    tok.eos_token = tok.convert_ids_to_tokens(common)  # a token the LLM writes often becomes EOS
    ctx = replace(ctx, llm=replace(ctx.llm, tokenizer=tok))
    stop = tok.decode([plain[1][4]])
    for c in (ctx, replace(ctx, stop_strings=(stop,))):
        lock = collect_events(c, collect_lockstep_batch, PROMPTS, 8)
        assert_events_equal(lock, collect_events(c, collect_oracle_batch, PROMPTS, 8))
        assert len(lock) < len(PROMPTS) * MAX_NEW  # something was cut


def test_sampling_is_seeded_and_coupled(tiny_models: TinyModels) -> None:
    cfg = _config(tiny_models, method="contrastive", temperature=0.05, top_p=0.9, seed=5)
    run = [collect_events(context(c), collect_lockstep_batch, PROMPTS, 8) for c in (cfg, cfg)]
    assert_events_equal(run[0], run[1])
    other = collect_events(context(replace(cfg, seed=6)), collect_lockstep_batch, PROMPTS, 8)
    assert tokens_by_sample(other) != tokens_by_sample(run[0])
    # System 1 and System 2 draw with the same noise: identical models never disagree, even sampling.
    same = _config(tiny_models, slm=str(tiny_models.llm), temperature=0.05, seed=5)
    events = collect_events(context(same), collect_lockstep_batch, PROMPTS, 8)
    assert not any(events.column("mismatch").to_pylist())
    s1, argmax = np.asarray(events.column("s1_token_id")), np.asarray(events.column("llm_token_id"))
    assert (s1 != argmax).any()  # System 1's token is its sample, not its argmax


@pytest.fixture
def sync_counter(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[], int]]:
    """Counts host synchronisations (.cpu/.item/.tolist/.numpy/bool) made from collector code."""
    calls = [0]
    here = str(Path(__file__).resolve().parents[2] / "collector")

    def counting(name: str) -> Callable[..., Any]:
        original = getattr(torch.Tensor, name)

        def wrapper(self: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
            if sys._getframe(1).f_code.co_filename.startswith(here):
                calls[0] += 1
            return original(self, *args, **kwargs)

        return wrapper

    for name in ("cpu", "item", "tolist", "numpy", "__bool__"):
        monkeypatch.setattr(torch.Tensor, name, counting(name))
    yield lambda: calls[0]


def test_decode_loop_synchronises_only_every_few_steps(tiny_models: TinyModels, sync_counter: Any) -> None:
    cfg = _config(tiny_models, method="contrastive", max_new_tokens=40)
    ctx = context(cfg)
    ids = ctx.llm.tokenizer(list(PROMPTS[:4]), return_tensors="pt", padding=True, add_special_tokens=False)
    before = sync_counter()
    collect_lockstep_batch(ctx, ids["input_ids"], ids["attention_mask"])
    checks = 40 // CHECK_EVERY  # one "all rows done?" check every CHECK_EVERY steps, nothing per token
    assert sync_counter() - before <= 2 * checks


def test_run_collection_ingests_routed_lockstep_runs(
    tiny_models: TinyModels, warehouse_path: Path, prompts_file: Path
) -> None:
    cfg = _config(
        tiny_models, method="contrastive", router="entropy", threshold=5.7617, prompts=str(prompts_file)
    )
    summary = run_collection(replace(cfg, batch_size=4), warehouse_path, progress=False)
    assert summary.status == "complete" and 0 < summary.consulted < summary.tokens
    with duckdb.connect(str(warehouse_path), read_only=True) as con:
        rows = con.execute(
            "SELECT consulted, s1_entropy > 5.7617, token_id, s1_token_id, s2_token_id, draft_index "
            "FROM token_events"
        ).fetchall()
    assert len(rows) == summary.tokens
    for consulted, above, token, s1, s2, draft_index in rows:
        assert consulted == above and token == (s2 if consulted else s1) and draft_index is None
