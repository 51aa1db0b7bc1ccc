"""MBPP (Austin et al., 2021): short Python functions, each checked by three asserts.

Data: the published JSONL (`task_id`, `text`, `code`, `test_list`, `test_setup_code`,
`challenge_test_list`; the "sanitized" variant's `prompt` and `test_imports` are read too), or a
`datasets` folder. Splits follow the paper's task ids: 1-10 prompt (few-shot), 11-510 test,
511-600 validation, 601-974 train (a `datasets` folder's own split names win). Evaluated: the test
ids; a file holding none of them is evaluated as it is.
Prompt (10-shot by default, as in the paper's setting): the first `shots` items of the prompt split
(else the train split, else the evaluated items themselves, never the evaluated item), in task-id
order, in the [BEGIN]/[DONE] format of the standard few-shot harnesses:

    You are an expert Python programmer, and here is your task: {text} Your code should pass these tests:

    {test 1}
    {test 2}
    {test 3}
    [BEGIN]
    {code}
    [DONE]

    ... the evaluated task, ending after "[BEGIN]\\n"

Checked by `check_code`: the generated program (cut at "[DONE]") runs in the sandbox with the setup code
and the asserts' calls; their values are compared here with the asserts' literals. Stops at "[DONE]".
"""

from __future__ import annotations

from collector.tasks.base import Task, TaskItem
from collector.tasks.checkers import check_code
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

NAME = "mbpp"
DESCRIPTION = "MBPP Python tasks (JSONL; 10-shot from the prompt split; run against the task's asserts)"
DEFAULT_SHOTS = 10
STOP_STRINGS = ("[DONE]", "\nYou are an expert Python programmer")
EXPECTED = "MBPP JSONL with 'task_id', 'text', 'code', 'test_list' (or a datasets save_to_disk folder)"
_SPLIT_RANGES = (("prompt", 1, 10), ("test", 11, 510), ("validation", 511, 600), ("train", 601, 974))


def split_of(task_id: int) -> str:
    """The paper's split of a task id (ids outside 1-974 count as test)."""
    return next((name for name, low, high in _SPLIT_RANGES if low <= task_id <= high), "test")


def normalize(record: Record) -> Record:
    """A record with int `task_id`, `text`, `code`, `tests` (list) and `setup` (str), split assigned."""
    fields = dict(record.fields)
    if fields.get("text") is None and fields.get("prompt") is not None:
        fields["text"] = fields["prompt"]  # the sanitized variant
    Record(fields, record.split, record.where).require("task_id", "text", "code", "test_list")
    try:
        task_id = int(fields["task_id"])
    except (TypeError, ValueError) as exc:
        raise UserError(
            f"{record.where}: field 'task_id' must be an integer, got {fields['task_id']!r}"
        ) from exc
    tests = fields["test_list"]
    if not isinstance(tests, list) or not tests or not all(isinstance(t, str) for t in tests):
        raise UserError(f"{record.where}: field 'test_list' must be a non-empty list of assert strings")
    setup = [str(fields.get("test_setup_code") or ""), *map(str, fields.get("test_imports") or [])]
    normalized = {
        "task_id": task_id,
        "text": _lf(str(fields["text"])).strip(),
        "code": _lf(str(fields["code"])).strip("\n"),
        "tests": [_lf(test).strip() for test in tests],
        "setup": _lf("\n".join(part for part in setup if part.strip())),
    }
    return Record(normalized, record.split or split_of(task_id), record.where)


def _lf(text: str) -> str:
    return text.replace("\r\n", "\n")


def format_task(record: Record) -> str:
    """The task statement with its tests, ending in '[BEGIN]\\n'."""
    fields = record.fields
    tests = "\n".join(fields["tests"])
    return (
        f"You are an expert Python programmer, and here is your task: {fields['text']} "
        f"Your code should pass these tests:\n\n{tests}\n[BEGIN]\n"
    )


def format_prompt(shots: list[Record], record: Record) -> str:
    """The few-shot prompt for one task."""
    examples = "".join(f"{format_task(shot)}{shot.fields['code']}\n[DONE]\n\n" for shot in shots)
    return examples + format_task(record)


def tests_for(record: Record) -> str:
    """What runs after the generated program: setup code, then the asserts."""
    fields = record.fields
    return "\n".join(part for part in (fields["setup"], *fields["tests"]) if part)


def load(path: str | None, *, samples: int | None = None, seed: int = 0, shots: int | None = None) -> Task:
    """MBPP from a local file or folder: a seeded subset of the test tasks, each with its prompt."""
    source = dataset_path(path, NAME, EXPECTED)
    records = sorted(
        (normalize(r) for r in read_records(source, NAME, EXPECTED)), key=lambda r: r.fields["task_id"]
    )
    evaluated, shot_pool = split_pools(
        records, eval_splits=("test",), shot_splits=("prompt", "train"), source=str(source), else_all=True
    )
    count = shot_count(shots, DEFAULT_SHOTS)
    items = []
    for record in seeded_subset(evaluated, samples, seed):
        prompt = format_prompt(pick_shots(shot_pool, count, record), record)
        extra = (("prefix", ""), ("tests", tests_for(record)))
        items.append(TaskItem(f"{NAME}/{record.fields['task_id']}", prompt, record.fields["code"], extra))
    return Task(NAME, tuple(items), STOP_STRINGS, check_code)
