"""GSM8K (Cobbe et al., 2021): grade-school maths word problems with a numeric answer.

Data: the published JSONL (`question`, `answer`; the answer's last line is `#### N`), gzip or not, or a
folder written by `datasets`' `save_to_disk` (a DatasetDict with `train`/`test`, or one split).
Evaluated: the `test` split (a file or folder with one split is used as it is).
Prompt (8-shot by default, as in the paper's setting): the first `shots` items of the `train` split, in
file order, never the evaluated item; calculator annotations `<<48/2=24>>` are removed from them:

    Question: {question}
    Answer: {worked answer ending in "#### N"}

    ...
    Question: {question}
    Answer:

Checked by `check_numeric` against the number after `####`. Stops at the next "Question:".

Without a path: the published dataset through `datasets` (`openai/gsm8k`, config `main`, as
lm-evaluation-harness loads it) where `datasets` is installed and the hub is reachable; otherwise one
line saying which file to pass and where the published one lives.
"""

from __future__ import annotations

import os
import re

from collector.tasks.base import Task, TaskItem
from collector.tasks.checkers import check_numeric
from collector.tasks.formats import (
    Record,
    dataset_path,
    pick_shots,
    read_records,
    seeded_subset,
    shot_count,
    split_pools,
)
from warehouse.errors import UserError

NAME = "gsm8k"
DESCRIPTION = "GSM8K maths word problems (JSONL or a datasets folder; 8-shot; numeric answer)"
DEFAULT_SHOTS = 8
STOP_STRINGS = ("Question:", "\n\n\n")
EXPECTED = "GSM8K JSONL with 'question' and 'answer' ('... #### N'), or a datasets save_to_disk folder"
PUBLISHED_HUB = ("openai/gsm8k", "main")
PUBLISHED_FILE = "https://github.com/openai/grade-school-math/raw/master/grade_school_math/data/test.jsonl"
_CALCULATOR = re.compile(r"<<[^<>]*>>")
_FINAL = re.compile(r"####\s*(-?[\d,]*\.?\d+)\s*$")


def final_answer(record: Record) -> str:
    """The number after '####' of a GSM8K answer, commas removed."""
    answer = str(record.fields["answer"]).strip()
    match = _FINAL.search(answer)
    if match is None:
        raise UserError(f"{record.where}: field 'answer' does not end in '#### <number>'; is this GSM8K?")
    return match.group(1).replace(",", "")


def format_example(record: Record) -> str:
    """One solved example, calculator annotations removed."""
    answer = _CALCULATOR.sub("", str(record.fields["answer"]).strip())
    return f"Question: {str(record.fields['question']).strip()}\nAnswer: {answer}"


def format_prompt(shots: list[Record], record: Record) -> str:
    """The few-shot prompt for one item."""
    parts = [format_example(shot) + "\n\n" for shot in shots]
    return "".join(parts) + f"Question: {str(record.fields['question']).strip()}\nAnswer:"


def _no_path(why: str) -> UserError:
    return UserError(
        f"gsm8k needs its data and {why}: pass the published test file with --dataset-path test.jsonl "
        f"(it lives at {PUBLISHED_FILE}; or a datasets save_to_disk folder of {PUBLISHED_HUB[0]})"
    )


def published_records() -> list[Record]:
    """Every split of the published dataset through `datasets` (only when no path is given)."""
    if os.environ.get("HF_DATASETS_OFFLINE") == "1" or os.environ.get("HF_HUB_OFFLINE") == "1":
        raise _no_path("the hub is switched off here (HF_HUB_OFFLINE / HF_DATASETS_OFFLINE)")
    try:
        import datasets
    except ImportError:
        raise _no_path("no path was given (with the `datasets` package installed it is fetched)") from None
    try:
        splits = datasets.load_dataset(*PUBLISHED_HUB)
    except (OSError, ConnectionError, ValueError) as exc:  # offline, hub down, or refused
        raise _no_path(f"{PUBLISHED_HUB[0]} could not be fetched ({type(exc).__name__})") from exc
    return [
        Record(dict(row), split, f"{PUBLISHED_HUB[0]} {split} row {i}")
        for split in splits
        for i, row in enumerate(splits[split])
    ]


def load(path: str | None, *, samples: int | None = None, seed: int = 0, shots: int | None = None) -> Task:
    """GSM8K from a local file or folder (or, without one, the published dataset): a seeded subset of
    the test split, each with its prompt."""
    if path is None:
        records, source = published_records(), "/".join(PUBLISHED_HUB)
    else:
        found = dataset_path(path, NAME, EXPECTED)
        records, source = read_records(found, NAME, EXPECTED), str(found)
    for record in records:
        record.require("question", "answer")
        final_answer(record)
    evaluated, shot_pool = split_pools(records, eval_splits=("test",), shot_splits=("train",), source=source)
    count = shot_count(shots, DEFAULT_SHOTS)
    index = {id(record): i for i, record in enumerate(evaluated)}
    items = []
    for record in seeded_subset(evaluated, samples, seed):
        prompt = format_prompt(pick_shots(shot_pool, count, record), record)
        item_id = f"{NAME}/{record.split or 'all'}/{index[id(record)]}"
        items.append(TaskItem(item_id, prompt, final_answer(record)))
    return Task(NAME, tuple(items), STOP_STRINGS, check_numeric)
