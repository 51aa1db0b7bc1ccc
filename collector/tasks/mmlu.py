"""MMLU (Hendrycks et al., 2021), STEM subjects: four-option multiple choice.

STEM is the paper's category (its `categories.py`: physics, chemistry, biology, computer science, maths,
engineering), i.e. the 18 subjects in `STEM_SUBJECTS`; anatomy is filed under health there, so it is
not included (lm-eval-harness's `mmlu_stem` adds it). Other subjects in the data are skipped.

Data, any of:
- a `datasets` save_to_disk folder of `cais/mmlu` (`question`, `subject`, `choices`, `answer` 0-3),
  with splits `test`, `validation`, `dev`, `auxiliary_train`, or a single split;
- JSONL with `question`, `choices` (4 strings), `answer` (0-3 or A-D), `subject`;
- CSV with a header: `question`, `subject`, `answer`, and either `choices` (a JSON list) or `A`..`D`;
- the original headerless CSVs (`question, A, B, C, D, answer`) named `<subject>_<split>.csv`
  (`data/test/abstract_algebra_test.csv`), one file or a folder of them.
Evaluated: the `test` split. Prompt (5-shot by default, the paper's): the first `shots` items of the
same subject from the `dev` split (the paper's few-shot split), in file order, never the evaluated item;
with one split, they come from it. The paper's format:

    The following are multiple choice questions (with answers) about {subject}.

    {question}
    A. {choice}
    ...
    D. {choice}
    Answer: {letter}

    ... the evaluated question, ending in "Answer:"

Checked by `check_choice`. Stops at a blank line.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from collector.tasks.base import Task, TaskItem
from collector.tasks.checkers import check_choice
from collector.tasks.formats import (
    Record,
    dataset_path,
    is_saved_dataset,
    pick_shots,
    read_csv,
    read_records,
    seeded_subset,
    shot_count,
    split_pools,
)
from warehouse.errors import UserError

NAME = "mmlu-stem"
DESCRIPTION = "MMLU, the 18 STEM subjects (datasets folder, CSV or JSONL; 5-shot; A-D answer)"
DEFAULT_SHOTS = 5
STOP_STRINGS = ("\n\n",)
LETTERS = "ABCD"
EXPECTED = (
    "an MMLU datasets save_to_disk folder, JSONL/CSV with question, choices, answer, subject, "
    "or the original <subject>_<split>.csv files"
)
STEM_SUBJECTS = (
    "abstract_algebra",
    "astronomy",
    "college_biology",
    "college_chemistry",
    "college_computer_science",
    "college_mathematics",
    "college_physics",
    "computer_security",
    "conceptual_physics",
    "electrical_engineering",
    "elementary_mathematics",
    "high_school_biology",
    "high_school_chemistry",
    "high_school_computer_science",
    "high_school_mathematics",
    "high_school_physics",
    "high_school_statistics",
    "machine_learning",
)
_ORIGINAL_NAME = re.compile(r"^(?P<subject>[a-z_]+)_(?P<split>dev|val|test)$")
_ORIGINAL_SPLITS = {"dev": "dev", "val": "validation", "test": "test"}


def normalize(record: Record) -> Record:
    """A record with `question`, `subject`, `choices` (4 strings) and `answer` (a letter)."""
    record.require("question", "subject", "answer")
    fields = record.fields
    normalized = {
        "question": str(fields["question"]).strip(),
        "subject": str(fields["subject"]).strip(),
        "choices": _choices(record),
        "answer": _letter(fields["answer"], record),
    }
    return Record(normalized, record.split, record.where)


def read_original_csv(path: Path) -> list[Record]:
    """Records of one original headerless MMLU CSV, subject and split taken from its name."""
    match = _ORIGINAL_NAME.match(path.stem)
    if match is None:
        raise UserError(
            f"{path}: a CSV without a header must be an original MMLU file named <subject>_<split>.csv "
            "(e.g. abstract_algebra_test.csv); or add a header row (question, choices, answer, subject)"
        )
    subject, split = match.group("subject"), _ORIGINAL_SPLITS[match.group("split")]
    records = []
    for row in read_csv(path, split):
        if len(row.fields) != 6:
            raise UserError(
                f"{row.where} has {len(row.fields)} columns; expected question, A, B, C, D, answer"
            )
        values = [str(row.fields[str(i)]) for i in range(6)]
        fields = {
            "question": values[0],
            "subject": subject,
            "choices": json.dumps(values[1:5]),
            "answer": values[5],
        }
        records.append(normalize(Record(fields, split, row.where)))
    return records


def read_mmlu(source: Path) -> list[Record]:
    """Normalized records of any supported MMLU file or folder."""
    if source.is_dir() and not is_saved_dataset(source):
        files = [f for f in sorted(source.rglob("*.csv")) if _ORIGINAL_NAME.match(f.stem)]
        if not files:
            raise UserError(
                f"{source} holds neither a datasets folder nor <subject>_<split>.csv files; {EXPECTED}"
            )
        return [record for file in files for record in read_original_csv(file)]
    records = read_records(source, NAME, EXPECTED)
    if source.suffix == ".csv" and "question" not in records[0].fields:
        return read_original_csv(source)
    return [normalize(record) for record in records]


def _choices(record: Record) -> list[str]:
    fields = record.fields
    raw = fields.get("choices")
    if raw is None and all(letter in fields for letter in LETTERS):
        raw = [fields[letter] for letter in LETTERS]
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise UserError(
                f"{record.where}: field 'choices' must be a JSON list of 4 strings ({exc})"
            ) from exc
    if raw is None:
        raise UserError(f"{record.where} has no field 'choices' (nor columns A, B, C, D)")
    if not isinstance(raw, list) or len(raw) != 4:
        raise UserError(f"{record.where}: field 'choices' must hold exactly 4 options, got {raw!r}")
    return [str(choice).strip() for choice in raw]


def _letter(answer: object, record: Record) -> str:
    text = str(answer).strip().upper()
    if text in LETTERS:
        return text
    if text in {"0", "1", "2", "3"}:
        return LETTERS[int(text)]
    raise UserError(f"{record.where}: field 'answer' must be 0-3 or A-D, got {answer!r}")


def format_question(record: Record) -> str:
    """Question, lettered options and 'Answer:'."""
    options = "".join(
        f"\n{letter}. {choice}" for letter, choice in zip(LETTERS, record.fields["choices"], strict=True)
    )
    return f"{record.fields['question']}{options}\nAnswer:"


def format_prompt(shots: list[Record], record: Record) -> str:
    """The paper's few-shot prompt for one item."""
    subject = record.fields["subject"].replace("_", " ")
    header = f"The following are multiple choice questions (with answers) about {subject}.\n\n"
    examples = "".join(f"{format_question(shot)} {shot.fields['answer']}\n\n" for shot in shots)
    return header + examples + format_question(record)


def load(path: str | None, *, samples: int | None = None, seed: int = 0, shots: int | None = None) -> Task:
    """MMLU STEM from a local file or folder: a seeded subset of the test split, each with its prompt."""
    source = dataset_path(path, NAME, EXPECTED)
    records = read_mmlu(source)
    stem = [record for record in records if record.fields["subject"] in STEM_SUBJECTS]
    if not stem:
        found = sorted({record.fields["subject"] for record in records})
        raise UserError(
            f"{source} holds no STEM subject (found: {found[:10]}); expected some of {STEM_SUBJECTS}"
        )
    evaluated, shot_pool = split_pools(stem, eval_splits=("test",), shot_splits=("dev",), source=str(source))
    count = shot_count(shots, DEFAULT_SHOTS)
    index = {id(record): i for i, record in enumerate(evaluated)}
    items = []
    for record in seeded_subset(evaluated, samples, seed):
        same_subject = [shot for shot in shot_pool if shot.fields["subject"] == record.fields["subject"]]
        prompt = format_prompt(pick_shots(same_subject, count, record), record)
        item_id = f"{NAME}/{record.fields['subject']}/{record.split or 'all'}/{index[id(record)]}"
        items.append(
            TaskItem(item_id, prompt, record.fields["answer"], (("subject", record.fields["subject"]),))
        )
    return Task(NAME, tuple(items), STOP_STRINGS, check_choice)
