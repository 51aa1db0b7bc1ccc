"""Tasks: real benchmarks read from local files, and the built-in suite (`builtin:<family>`)."""

from __future__ import annotations

from collector.tasks import gsm8k, humaneval, mbpp, mmlu
from collector.tasks.base import Checker, Task, TaskItem
from collector.tasks.checkers import check_code
from collector.tasks.sandbox import require_sandbox
from warehouse.errors import UserError

__all__ = [
    "DATASETS",
    "DATASET_DESCRIPTIONS",
    "Checker",
    "Task",
    "TaskItem",
    "describe_datasets",
    "load_task",
]

_LOADERS = {module.NAME: module for module in (gsm8k, mmlu, mbpp, humaneval)}
DATASETS: tuple[str, ...] = tuple(_LOADERS)
BUILTIN_PREFIX = "builtin:"
DATASET_DESCRIPTIONS: dict[str, str] = {
    **{name: module.DESCRIPTION for name, module in _LOADERS.items()},
    f"{BUILTIN_PREFIX}<family>": "the project's built-in suite shaped like GSM8K, MMLU or MBPP (no files)",
}


def describe_datasets() -> str:
    """One line per dataset name, for --help."""
    width = max(len(name) for name in DATASET_DESCRIPTIONS)
    return "\n".join(f"{name:<{width}}  {text}" for name, text in DATASET_DESCRIPTIONS.items())


def load_task(
    name: str,
    *,
    path: str | None = None,
    samples: int | None = None,
    seed: int = 0,
    shots: int | None = None,
) -> Task:
    """Load a dataset by name: a seeded subset of `samples` items (all if None), `shots` examples each."""
    if samples is not None and samples < 1:
        raise UserError(f"samples must be at least 1 (or None for all), got {samples}")
    if shots is not None and shots < 0:
        raise UserError(f"shots must be 0 or more (or None for the dataset's default), got {shots}")
    if name.startswith(BUILTIN_PREFIX):
        from collector.tasks.builtin import load_builtin  # lazily: it builds its pools on first use

        task = load_builtin(name.removeprefix(BUILTIN_PREFIX), samples=samples, seed=seed, shots=shots)
    elif name in _LOADERS:
        task = _LOADERS[name].load(path, samples=samples, seed=seed, shots=shots)
    else:
        known = ", ".join([*DATASETS, f"{BUILTIN_PREFIX}<family>"])
        raise UserError(f"unknown dataset {name!r}; choose one of: {known}")
    if task.checker is check_code:
        require_sandbox()  # generated code runs only in bubblewrap: refuse now, before any model loads
    return task
