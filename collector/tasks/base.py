"""The task contract shared by built-in tasks and real benchmark loaders."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class TaskItem:
    """One evaluation item: the full prompt (few-shot examples included) and what a right answer is."""

    item_id: str
    prompt: str
    reference: str | None = None
    # Extra data a checker needs (e.g. MBPP test asserts), as a tuple of (key, value) pairs.
    extra: tuple[tuple[str, str], ...] = ()
    # The prompt as a conversation, for models with a chat template: (role, text) turns ending with the
    # user's question, and the cue the answer starts with (e.g. "Answer:"), which the template's assistant
    # turn is followed by. Empty: the whole prompt is one user turn.
    chat: tuple[tuple[str, str], ...] = ()
    cue: str = ""

    def get(self, key: str, default: str | None = None) -> str | None:
        """Value of one extra field."""
        return dict(self.extra).get(key, default)


# A checker takes the item and the generated continuation and says whether it is right.
Checker = Callable[[TaskItem, str], bool]


@dataclass(frozen=True)
class Task:
    """A loaded dataset: items in a fixed order, stop strings, and an answer checker (None if none)."""

    name: str
    items: tuple[TaskItem, ...]
    stop_strings: tuple[str, ...] = ()
    checker: Checker | None = field(default=None, compare=False)

    def check(self, item: TaskItem, output: str) -> bool | None:
        """True/False where the task has a checker, else None."""
        return None if self.checker is None else self.checker(item, output)
