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
"""

from __future__ import annotations

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


def load(path: str | None, *, samples: int | None = None, seed: int = 0, shots: int | None = None) -> Task:
    """GSM8K from a local file or folder: a seeded subset of the test split, each with its prompt."""
    source = dataset_path(path, NAME, EXPECTED)
    records = read_records(source, NAME, EXPECTED)
    for record in records:
        record.require("question", "answer")
        final_answer(record)
    evaluated, shot_pool = split_pools(
        records, eval_splits=("test",), shot_splits=("train",), source=str(source)
    )
    count = shot_count(shots, DEFAULT_SHOTS)
    index = {id(record): i for i, record in enumerate(evaluated)}
    items = []
    for record in seeded_subset(evaluated, samples, seed):
        prompt = format_prompt(pick_shots(shot_pool, count, record), record)
        item_id = f"{NAME}/{record.split or 'all'}/{index[id(record)]}"
        items.append(TaskItem(item_id, prompt, final_answer(record)))
    return Task(NAME, tuple(items), STOP_STRINGS, check_numeric)
