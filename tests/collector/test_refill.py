"""Continuous batching on tiny real models: prompts of very different lengths that end at very different
steps refill a batch of 3, and every row's events equal decoding it alone (batch 1, static), in the original
order with the original sample ids; windowed caches and sampled runs stay in static batches."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from collector.batch import batch_tables
from collector.config import RunConfig
from collector.decode import batch_collector
from collector.decode.lockstep import CHECK_EVERY
from collector.decode.refill import DROP_AT, Refill, refill_rows
from collector.engine import decode_batches
from collector.methods.base import BatchOutput, CollectContext
from collector.prompts import prompt_ids
from collector.tasks.base import Task
from tests.arch_models import make_arch_model, zoo_tokenizer
from tests.collector.helpers import (
    PROMPTS,
    assert_events_equal,
    collect_events,
    context,
    one_thread,  # noqa: F401  (fixture)
    task_of,
    tokens_by_sample,
)
from tests.conftest import TinyModels

pytestmark = pytest.mark.usefixtures("one_thread")
MAX_NEW = 20
LONG = "jumps over the lazy dog and the quick brown fox " * 6  # ~60 tokens beside prompts of 1 to 10
MIXED = (LONG, *PROMPTS[:4], LONG[:40], PROMPTS[4], LONG, *PROMPTS[5:])  # 11 prompts


def _ctx(models: TinyModels, **kw: Any) -> CollectContext:
    """A context whose EOS is a token the LLM writes often, so rows end anywhere from step 1 to MAX_NEW."""
    cfg = replace(
        RunConfig(llm=str(models.llm), slm=str(models.slm), prompts="unused", max_new_tokens=MAX_NEW), **kw
    )
    ctx = context(cfg)
    plain = tokens_by_sample(collect_events(ctx, batch_collector(cfg), MIXED[:4], 4))
    common = int(np.bincount(np.concatenate([v[1:] for v in plain.values()])).argmax())
    tok = ctx.llm.tokenizer.__class__.from_pretrained(ctx.llm.path)
    tok.eos_token = tok.convert_ids_to_tokens(common)
    return replace(ctx, llm=replace(ctx.llm, tokenizer=tok))


def _refilled_events(ctx: CollectContext, prompts: tuple[str, ...], batch: int) -> pa.Table:
    """The events the engine stages, batch by batch, checking each batch's sample ids and order."""
    ctx = replace(ctx, config=replace(ctx.config, batch_size=batch))
    task = task_of(prompts, ctx.stop_strings)
    todo = list(range(len(prompts)))
    tables = []
    for i, part in enumerate(decode_batches(ctx, task.items, todo, batch_collector(ctx.config))):
        assert part.chunk == todo[i * batch : (i + 1) * batch]
        items = [task.items[s] for s in part.chunk]
        _, events = batch_tables(
            part.out.trace, part.valid, part.chunk, items, [0] * len(items), ctx.llm.tokenizer, task
        )
        assert sorted(set(events.column("sample_id").to_pylist())) == part.chunk
        tables.append(events)
    return pa.concat_tables(tables)


@pytest.mark.parametrize(
    "kw",
    [
        {},  # the oracle fast path
        {"method": "contrastive"},
        {"router": "max_prob", "threshold": 0.00427},  # a routed lock-step oracle
    ],
    ids=["oracle-fast-path", "contrastive", "oracle-routed"],
)
def test_refilled_rows_equal_each_row_alone(tiny_models: TinyModels, kw: dict[str, Any]) -> None:
    ctx = _ctx(tiny_models, **kw)
    collect = batch_collector(ctx.config)
    assert refill_rows(ctx, collect, [[1, 2]]) is not None
    alone = collect_events(ctx, collect, MIXED, 1)
    refilled = _refilled_events(ctx, MIXED, 3)
    assert_events_equal(alone, refilled.sort_by([("sample_id", "ascending"), ("step", "ascending")]))
    lengths = [len(v) for v in tokens_by_sample(alone).values()]
    assert min(lengths) < CHECK_EVERY < max(lengths) == MAX_NEW  # rows end early and late


def _outputs_events(ctx: CollectContext, task: Task, outs: list[BatchOutput], batch: int) -> pa.Table:
    """The events of Refill's outputs, batch b holding prompts b * batch onwards."""
    tables = []
    for b, out in enumerate(outs):
        chunk = list(range(batch * b, min(batch * (b + 1), len(task.items))))
        items = [task.items[i] for i in chunk]
        valid = out.valid.tolist()
        tables.append(
            batch_tables(out.trace, valid, chunk, items, [0] * len(chunk), ctx.llm.tokenizer, task)[1]
        )
    return pa.concat_tables(tables)


@pytest.mark.parametrize("every", [1, CHECK_EVERY], ids=["cpu-checks", "accelerator-checks"])
def test_refilling_takes_fewer_steps_than_static_batches(tiny_models: TinyModels, every: int) -> None:
    """The batch stays full: fewer decode steps than static batches, which run to their longest row; with
    host checks every step (the CPU) and every CHECK_EVERY steps (an accelerator) alike."""
    ctx = _ctx(tiny_models, max_new_tokens=32)
    task = task_of(MIXED)
    rows = [prompt_ids(ctx, it) for it in task.items]
    engine = refill_rows(ctx, batch_collector(ctx.config), rows)
    assert engine is not None
    refill = Refill(ctx, engine, rows, 3, every)
    outs = list(refill.run())
    static_steps = sum(max(o.valid.tolist()) for o in outs)  # each batch alone decodes to its longest row
    assert len(outs) == 4 and refill.g < static_steps
    alone = collect_events(ctx, batch_collector(ctx.config), MIXED, 1)
    assert_events_equal(alone, _outputs_events(ctx, task, outs, 3))


def test_drained_rows_leave_a_few_at_a_time(tiny_models: TinyModels) -> None:
    """Once no prompt is left, free rows keep stepping (pad) until they are 1/DROP_AT of the rows, then
    leave together (each drop copies the cache); every row's events still equal decoding it alone."""
    ctx = _ctx(tiny_models)
    prompts = MIXED * 3
    task = task_of(prompts)
    rows = [prompt_ids(ctx, it) for it in task.items]
    engine = refill_rows(ctx, batch_collector(ctx.config), rows)
    assert engine is not None
    drops: list[tuple[int, int]] = []  # (rows before, rows leaving)

    class Watched(Refill):
        def _keep(self, keep: list[int]) -> None:
            drops.append((len(self.live), len(self.live) - len(keep)))
            super()._keep(keep)

    batch = 3 * DROP_AT  # rows leave 3, 2, then 1 at a time
    outs = list(Watched(ctx, engine, rows, batch, 1).run())
    assert drops[0][0] == batch and all(left * DROP_AT >= before for before, left in drops)
    alone = collect_events(ctx, batch_collector(ctx.config), prompts, 1)
    assert_events_equal(alone, _outputs_events(ctx, task, outs, batch))


def test_stop_strings_cut_refilled_rows_like_static_ones(tiny_models: TinyModels) -> None:
    ctx = _ctx(tiny_models)
    plain = collect_events(ctx, batch_collector(ctx.config), MIXED, 4)
    stop = str(ctx.llm.tokenizer.decode(tokens_by_sample(plain)[0][4]))  # a character mid-row
    ctx = replace(ctx, stop_strings=(stop,))
    alone = collect_events(ctx, batch_collector(ctx.config), MIXED, 1)
    refilled = _refilled_events(ctx, MIXED, 4)
    assert_events_equal(alone, refilled.sort_by([("sample_id", "ascending"), ("step", "ascending")]))
    assert len(alone) < len(plain)  # the stop string cut rows


def test_windowed_caches_and_sampling_stay_static(tiny_models: TinyModels, tmp_path: Path) -> None:
    windowed = make_arch_model(tmp_path / "mistral", "mistral", zoo_tokenizer(), 1)
    cfg = RunConfig(llm=str(windowed), slm=str(windowed), prompts="unused", max_new_tokens=MAX_NEW)
    assert refill_rows(context(cfg), batch_collector(cfg), [[1, 2]]) is None
    sampled = replace(cfg, llm=str(tiny_models.llm), slm=str(tiny_models.slm), temperature=0.7)
    assert refill_rows(context(sampled), batch_collector(sampled), [[1, 2]]) is None
    speculative = replace(sampled, temperature=0.0, method="speculative")
    assert refill_rows(context(speculative), batch_collector(speculative), [[1, 2]]) is None


@pytest.mark.parametrize("arch", ["llama", "gpt2", "opt", "bloom"])
def test_refilled_rows_on_attention_architectures(
    arch: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Rotary, learned and mask-derived positions and ALiBi biases: refilled rows equal each row alone
    (the oracle fast path; the lock-step loop drives the same decoders)."""
    path = make_arch_model(tmp_path_factory.mktemp("refill") / arch, arch, zoo_tokenizer(), 1)
    prompts = (LONG, *PROMPTS[:3], LONG[:30])
    cfg = RunConfig(llm=str(path), slm=str(path), prompts="unused", max_new_tokens=10)
    ctx = context(cfg)
    assert refill_rows(ctx, batch_collector(cfg), [[1, 2]]) is not None
    alone = collect_events(ctx, batch_collector(cfg), prompts, 1)
    refilled = _refilled_events(ctx, prompts, 2)
    assert_events_equal(alone, refilled.sort_by([("sample_id", "ascending"), ("step", "ascending")]))
