"""Reading benchmark files in their published formats: JSONL (plain or gzip), CSV, and `datasets` folders.

A `datasets` folder is what `Dataset.save_to_disk` / `DatasetDict.save_to_disk` writes: Arrow IPC stream
files listed in each split's `state.json`, and `dataset_dict.json` naming the splits. It is read with
pyarrow directly, so `datasets` is not needed at run time.
"""

from __future__ import annotations

import csv
import gzip
import json
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from warehouse.errors import UserError

T = TypeVar("T")


@dataclass(frozen=True)
class Record:
    """One row of a dataset file: its fields, its split (None when the file does not say) and its place."""

    fields: dict[str, Any]
    split: str | None
    where: str

    def require(self, *names: str) -> None:
        """Raise a ValueError naming the first missing field and where the record is."""
        for name in names:
            if self.fields.get(name) is None:
                have = ", ".join(sorted(self.fields)) or "none"
                raise UserError(
                    f"{self.where} has no field {name!r} (fields: {have}); is this the right dataset?"
                )


def dataset_path(path: str | None, dataset: str, expected: str) -> Path:
    """The existing local path of a dataset, or a FileNotFoundError saying what to pass."""
    if path is None:
        raise UserError(
            f"{dataset} is read from a local file and none was given; pass its path (expected: {expected})"
        )
    found = Path(path).expanduser()
    if not found.exists():
        raise UserError(f"{dataset} data not found at {found}; pass an existing path ({expected})")
    return found


def read_records(path: Path, dataset: str, expected: str) -> list[Record]:
    """All records of a JSONL/CSV file or a `datasets` folder; refuses unknown formats and empty data."""
    if path.is_dir():
        if not is_saved_dataset(path):
            raise UserError(f"{path} is a folder but not one written by save_to_disk; expected {expected}")
        records = read_saved_dataset(path)
    elif path.name.endswith((".jsonl", ".jsonl.gz", ".json.gz", ".ndjson")):
        records = read_jsonl(path)
    elif path.suffix == ".csv":
        records = read_csv(path)
    else:
        raise UserError(f"{path}: unknown format for {dataset}; expected {expected}")
    if not records:
        raise UserError(f"{path} holds no {dataset} records; expected {expected}")
    return records


def read_jsonl(path: Path) -> list[Record]:
    """One record per non-empty line; a line that is not a JSON object is an error naming the line."""
    records = []
    for number, line in _lines(path):
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            raise UserError(
                f"{path} line {number} is not valid JSON ({exc}); each line must be one object"
            ) from exc
        if not isinstance(value, dict):
            raise UserError(f"{path} line {number} is a JSON {type(value).__name__}, not an object")
        records.append(Record(value, None, f"{path.name} line {number}"))
    return records


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    opener = gzip.open if path.name.endswith(".gz") else open
    try:
        with opener(path, "rt", encoding="utf-8") as f:
            for number, line in enumerate(f, start=1):
                if line.strip():
                    yield number, line
    except (UnicodeDecodeError, gzip.BadGzipFile, EOFError) as exc:
        raise UserError(f"{path} is not a readable UTF-8 text file ({exc}); expected JSON Lines") from exc


def read_csv(path: Path, split: str | None = None) -> list[Record]:
    """Rows of a CSV file; with a header row its names are the fields, else fields are named 0, 1, ..."""
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.reader(f))
    except UnicodeDecodeError as exc:
        raise UserError(f"{path} is not UTF-8 text ({exc}); expected CSV") from exc
    rows = [row for row in rows if any(cell.strip() for cell in row)]
    if not rows:
        return []
    has_header = rows[0][0].strip().lower() == "question"
    names = [name.strip() for name in rows[0]] if has_header else [str(i) for i in range(len(rows[0]))]
    start = 2 if has_header else 1
    records = []
    for number, row in enumerate(rows[1:] if has_header else rows, start=start):
        if len(row) != len(names):
            raise UserError(f"{path} row {number} has {len(row)} columns, expected {len(names)}")
        records.append(Record(dict(zip(names, row, strict=True)), split, f"{path.name} row {number}"))
    return records


def is_saved_dataset(folder: Path) -> bool:
    """Whether a folder was written by `save_to_disk` (a DatasetDict or a single Dataset)."""
    return (folder / "dataset_dict.json").is_file() or (folder / "state.json").is_file()


def read_saved_dataset(folder: Path) -> list[Record]:
    """Records of every split of a `save_to_disk` folder, split names from `dataset_dict.json`."""
    dict_file = folder / "dataset_dict.json"
    if not dict_file.is_file():
        state = _read_json(folder / "state.json")
        return _read_split(folder, state.get("_split"))
    splits = _read_json(dict_file).get("splits")
    if not isinstance(splits, list) or not splits:
        raise UserError(f"{dict_file} names no splits; was the folder written by DatasetDict.save_to_disk?")
    return [record for split in splits for record in _read_split(folder / split, split)]


def _read_split(folder: Path, split: str | None) -> list[Record]:
    import pyarrow as pa  # lazily: only `datasets` folders need it

    state = _read_json(folder / "state.json")
    files = [entry.get("filename") for entry in state.get("_data_files", [])]
    if not files or not all(isinstance(name, str) for name in files):
        raise UserError(f"{folder / 'state.json'} lists no data files; re-save the dataset with save_to_disk")
    records = []
    for name in files:
        try:
            with pa.memory_map(str(folder / name)) as source:
                rows = pa.ipc.open_stream(source).read_all().to_pylist()
        except (OSError, pa.ArrowInvalid) as exc:
            raise UserError(
                f"{folder / name} is not an Arrow stream written by save_to_disk ({exc})"
            ) from exc
        label = f"{folder.name}/{name}"
        records += [Record(row, split, f"{label} row {i}") for i, row in enumerate(rows)]
    return records


def _read_json(path: Path) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise UserError(f"{path} is missing; the folder is not a complete save_to_disk folder") from exc
    except json.JSONDecodeError as exc:
        raise UserError(f"{path} is not valid JSON ({exc})") from exc
    if not isinstance(value, dict):
        raise UserError(f"{path} should hold a JSON object")
    return value


def split_pools(
    records: Sequence[Record],
    *,
    eval_splits: Sequence[str],
    shot_splits: Sequence[str],
    source: str,
    else_all: bool = False,
) -> tuple[list[Record], list[Record]]:
    """(records to evaluate, records to draw few-shot examples from); one split is used for both.

    Without an evaluation split, `else_all` evaluates every record; otherwise that is an error.
    """
    present = list(dict.fromkeys(record.split for record in records))
    if len(present) <= 1:
        return list(records), list(records)
    eval_split = next((s for s in eval_splits if s in present), None)
    if eval_split is None and not else_all:
        raise UserError(
            f"{source} has splits {present} but none of {list(eval_splits)} to evaluate; "
            "pass a file or folder holding the evaluation split"
        )
    evaluated = [r for r in records if r.split == eval_split] if eval_split else list(records)
    shot_split = next((s for s in shot_splits if s in present and s != eval_split), None)
    shot_pool = [r for r in records if r.split == shot_split] if shot_split else evaluated
    return evaluated, shot_pool


def seeded_subset(items: Sequence[T], samples: int | None, seed: int) -> list[T]:
    """`samples` items picked with `seed`, kept in dataset order; all of them when samples is None."""
    if samples is None or samples >= len(items):
        return list(items)
    if samples < 1:
        raise UserError(f"samples must be at least 1, got {samples}")
    picked = sorted(random.Random(seed).sample(range(len(items)), samples))
    return [items[i] for i in picked]


def pick_shots(pool: Sequence[T], count: int, exclude: T) -> list[T]:
    """The first `count` records of the pool (fixed, in file order), never the evaluated one."""
    if count < 0:
        raise UserError(f"shots must be 0 or more, got {count}")
    return [r for r in pool if r is not exclude][:count]


def shot_count(shots: int | None, default: int) -> int:
    """The requested number of few-shot examples, or the dataset's default."""
    count = default if shots is None else shots
    if count < 0:
        raise UserError(f"shots must be 0 or more, got {count}")
    return count
