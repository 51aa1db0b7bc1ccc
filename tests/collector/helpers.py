"""Shared helpers of the collector engine tests: contexts on tiny models, event tables, perturbed copies."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from collector.architectures import check_models
from collector.batch import batch_tables
from collector.config import RunConfig
from collector.decode import BatchCollector
from collector.engine import chunks
from collector.methods.base import BatchOutput, CollectContext
from collector.modeling import LoadedModel, load_model, shared_vocab_size
from collector.prompts import encode_batch
from collector.routers import build_router
from collector.tasks.base import Task, TaskItem
from tests.conftest import PROMPT_TEXTS

CPU = torch.device("cpu")
PROMPTS = (*PROMPT_TEXTS, "two plus three? answer:", "jumps over the lazy dog and the quick")

_LOADED: dict[str, LoadedModel] = {}


def loaded(path: str | Path) -> LoadedModel:
    """A tiny model loaded once per test session (models are read-only in inference)."""
    key = str(path)
    if key not in _LOADED:
        _LOADED[key] = load_model(key, CPU, torch.float32)
    return _LOADED[key]


def context(config: RunConfig, stop_strings: tuple[str, ...] = ()) -> CollectContext:
    """A CollectContext like `engine.build_context` builds, on CPU fp32, with cached models."""
    llm, slm = loaded(config.llm), loaded(config.slm)
    tuned = loaded(config.slm_tuned) if config.slm_tuned else None
    check_models(config, ((m.name, m.model) for m in (llm, slm, tuned) if m is not None))
    vocab = shared_vocab_size(*(m for m in (llm, slm, tuned) if m is not None))
    generator = torch.Generator(device=CPU).manual_seed(config.seed)
    return CollectContext(llm, slm, vocab, config, stop_strings, tuned, build_router(config), generator)


def task_of(prompts: Sequence[str], stops: tuple[str, ...] = ()) -> Task:
    """A Task over plain prompts."""
    return Task("test", tuple(TaskItem(str(i), p) for i, p in enumerate(prompts)), stops)


def run_batches(
    ctx: CollectContext, collect: BatchCollector, prompts: Sequence[str], batch_size: int
) -> list[tuple[list[int], BatchOutput]]:
    """The raw batch outputs of `collect` over the prompts, in batches of `batch_size`."""
    task = task_of(prompts, ctx.stop_strings)
    outs = []
    for chunk in chunks(list(range(len(prompts))), batch_size):
        ids, mask, _ = encode_batch(ctx, [task.items[i] for i in chunk])
        outs.append((chunk, collect(ctx, ids, mask)))
    return outs


def collect_events(
    ctx: CollectContext, collect: BatchCollector, prompts: Sequence[str], batch_size: int
) -> pa.Table:
    """The token events the collector would stage, for all prompts, sorted by (sample_id, step)."""
    task = task_of(prompts, ctx.stop_strings)
    tables = []
    for chunk, out in run_batches(ctx, collect, prompts, batch_size):
        items = [task.items[i] for i in chunk]
        valid = out.valid.cpu().tolist()
        _, events = batch_tables(
            out.trace, valid, chunk, items, [0] * len(chunk), ctx.llm.tokenizer, task, out.extra
        )
        tables.append(events)
    return pa.concat_tables(tables).sort_by([("sample_id", "ascending"), ("step", "ascending")])


def tokens_by_sample(events: pa.Table) -> dict[int, list[int]]:
    """Each sample's emitted token ids, in order."""
    out: dict[int, list[int]] = {}
    for sid, tok in zip(
        events.column("sample_id").to_pylist(), events.column("token_id").to_pylist(), strict=True
    ):
        out.setdefault(sid, []).append(tok)
    return out


def perturbed_copy(src: Path, dst: Path, scale: float, seed: int = 0) -> Path:
    """Save a copy of a model with Gaussian noise of relative size `scale` added to every weight."""
    if (dst / "config.json").exists():
        return dst
    model = AutoModelForCausalLM.from_pretrained(src)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * scale * (p.std() if p.numel() > 1 else 1.0))
    model.save_pretrained(dst)
    AutoTokenizer.from_pretrained(src).save_pretrained(dst)
    return dst


def llm_greedy(model: LoadedModel, prompt: str, max_new_tokens: int) -> list[int]:
    """The model's own greedy continuation (transformers generate, batch 1), cut after EOS."""
    ids = model.tokenizer(prompt, return_tensors="pt", add_special_tokens=False)
    out = model.model.generate(
        **ids, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=model.tokenizer.pad_token_id
    )
    return out[0, ids["input_ids"].shape[1] :].tolist()


@pytest.fixture(scope="module")
def one_thread() -> Iterator[None]:
    """Tiny models run fastest on one thread, and far faster when other work shares the two CPU cores."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def assert_events_equal(a: pa.Table, b: pa.Table, *, rtol: float = 1e-5, atol: float = 1e-6) -> None:
    """Same rows: ids and flags exactly, fp32 figures up to rounding (batch shapes change summation order)."""
    assert a.column_names == b.column_names and a.num_rows == b.num_rows
    for col in a.column_names:
        x, y = a.column(col).to_numpy(zero_copy_only=False), b.column(col).to_numpy(zero_copy_only=False)
        if x.dtype.kind == "f":
            np.testing.assert_allclose(x, y, rtol=rtol, atol=atol, err_msg=col)
        else:
            np.testing.assert_array_equal(x, y, err_msg=col)


def at_step(events: pa.Table, column: str, step: int = 0) -> dict[int, Any]:
    """`column` of each sample's event at `step`."""
    cols = (events.column(c).to_pylist() for c in ("sample_id", "step", column))
    return {sid: v for sid, s, v in zip(*cols, strict=True) if s == step}


def next_token_logp(model: LoadedModel, prompt: str, vocab: int) -> torch.Tensor:
    """The model's log-probs [V] for the token after `prompt` (one plain forward pass)."""
    ids = model.tokenizer(prompt, return_tensors="pt", add_special_tokens=False)["input_ids"]
    with torch.inference_mode():
        return torch.log_softmax(model.model(input_ids=ids).logits[0, -1, :vocab], dim=-1)
