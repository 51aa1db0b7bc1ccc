"""From a device trace of one batch to the Arrow tables that become one staged shard."""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import torch
from transformers import PreTrainedTokenizerBase

from collector.tasks.base import Task, TaskItem
from collector.token_stats import STORED_FIELDS, StepTrace
from warehouse.catalogue import EVENT_SCHEMA, SAMPLE_SCHEMA, arrow_table


@dataclass(frozen=True)
class RowEnd:
    """Where one row's generation ends and why."""

    n_tokens: int
    stop_reason: str  # eos | stop_string | max_new_tokens
    output: str


def _decode(tokenizer: PreTrainedTokenizerBase, ids: list[int]) -> str:
    return str(tokenizer.decode(ids, skip_special_tokens=True))


def _first_stop(text: str, stops: Sequence[str]) -> int:
    hits = [i for i in (text.find(s) for s in stops if s) if i >= 0]
    return min(hits) if hits else -1


def row_end(
    tokens: np.ndarray, valid: int, tokenizer: PreTrainedTokenizerBase, stops: Sequence[str]
) -> RowEnd:
    """Cut a row at EOS or at the token that completes a stop string (binary search on prefixes)."""
    row = tokens[:valid].tolist()
    eos = tokenizer.eos_token_id
    n, reason = valid, "max_new_tokens"
    if eos is not None and eos in row:
        n, reason = row.index(eos) + 1, "eos"
    text = _decode(tokenizer, row[:n])
    if stops and _first_stop(text, stops) >= 0:
        lo, hi = 1, n  # smallest prefix whose text holds a stop string
        while lo < hi:
            mid = (lo + hi) // 2
            if _first_stop(_decode(tokenizer, row[:mid]), stops) >= 0:
                hi = mid
            else:
                lo = mid + 1
        n, reason = lo, "stop_string"
        text = _decode(tokenizer, row[:n])
        text = text[: _first_stop(text, stops)]
    return RowEnd(n, reason, text)


# Code checks each start one or two bubblewrap sandboxes (~0.2 s each, mostly waiting): run a few at once.
CHECK_WORKERS = 4


def check_all(task: Task, items: Sequence[TaskItem], outputs: Sequence[str]) -> list[bool | None]:
    """The task's verdict on each output (None where the task has no checker)."""
    if task.checker is None:
        return [None] * len(items)
    with ThreadPoolExecutor(max_workers=CHECK_WORKERS) as pool:
        return list(pool.map(task.check, items, outputs))


def _host(trace: StepTrace) -> dict[str, np.ndarray]:
    """One transfer per stored field per batch; every array [B, T], named as its column."""
    return {
        k: v.detach().to("cpu", torch.float32 if v.is_floating_point() else None).numpy()
        for k, v in ((name, getattr(trace, name)) for name in STORED_FIELDS)
    }


def batch_tables(
    trace: StepTrace,
    valid: Sequence[int],
    sample_ids: Sequence[int],
    items: Sequence[TaskItem],
    prompt_tokens: Sequence[int],
    tokenizer: PreTrainedTokenizerBase,
    task: Task,
    extra: dict[str, torch.Tensor] | None = None,
) -> tuple[pa.Table, pa.Table]:
    """(samples, events) Arrow tables of a finished batch; `valid[b]` generated tokens of row b."""
    host = _host(trace)
    extra_host = {k: v.detach().cpu().numpy() for k, v in (extra or {}).items()}
    ends = [row_end(host["token_id"][b], valid[b], tokenizer, task.stop_strings) for b in range(len(items))]
    columns: dict[str, list[np.ndarray]] = {
        k: [] for k in ("sample_id", "step", "rel_pos", *host, *extra_host)
    }
    for b, end in enumerate(ends):
        n = end.n_tokens
        columns["sample_id"].append(np.full(n, sample_ids[b], dtype=np.int32))
        columns["step"].append(np.arange(n, dtype=np.int32))
        columns["rel_pos"].append((np.arange(n, dtype=np.float32) / max(n, 1)).astype(np.float32))
        for key, arr in (*host.items(), *extra_host.items()):
            columns[key].append(arr[b, :n])
    data = {k: np.concatenate(v) if v else np.array([]) for k, v in columns.items()}
    data["mismatch"] = data["token_id"] != data["s1_token_id"]
    data["consulted"] = data["consulted"].astype(bool)
    events = arrow_table(data, EVENT_SCHEMA)  # a trace field that is no column of token_events is refused
    samples = pa.table(
        {
            "sample_id": pa.array(sample_ids, pa.int32()),
            "item_id": [it.item_id for it in items],
            "prompt": [it.prompt for it in items],
            "output": [e.output for e in ends],
            "n_tokens": pa.array([e.n_tokens for e in ends], pa.int32()),
            "prompt_tokens": pa.array(prompt_tokens, pa.int32()),
            "stop_reason": [e.stop_reason for e in ends],
            "reference": [it.reference for it in items],
            "correct": pa.array(check_all(task, items, [e.output for e in ends]), pa.bool_()),
        },
        schema=SAMPLE_SCHEMA,
    )
    return samples, events
