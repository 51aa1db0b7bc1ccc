"""Built-in tasks shaped like GSM8K, MMLU and MBPP, generated from a fixed world so the zoo can learn them.

One module per family (`arith`, `choice`, `code`) over the shared world (`world`); here the fixed pools and
loading. The zoo's training text is drawn from the train split by `collector.zoo.corpus`.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from functools import cache

from collector.tasks.base import Checker, Task, TaskItem
from collector.tasks.builtin.arith import arith_example
from collector.tasks.builtin.choice import choice_example, choice_keys, entities
from collector.tasks.builtin.code import code_example
from collector.tasks.builtin.world import (
    BUILTIN_FAMILIES,
    DEFAULT_SHOTS,
    EXAMPLE_SEPARATOR,
    POOL_SIZES,
    STOP_STRINGS,
    WORLD_SEED,
    Example,
    is_test,
    seeded_rng,
)
from collector.tasks.checkers import check_choice, check_code, check_numeric
from warehouse.errors import UserError


def draw(gen: Callable[[random.Random], tuple[Example, str]], rng: random.Random, test: bool) -> Example:
    """Draw generated examples until one falls in the wanted split."""
    while True:
        ex, _ = gen(rng)
        if is_test(ex.key) == test:
            return ex


def _draw_pool(family: str, split: str) -> tuple[Example, ...]:
    """A fixed pool of distinct examples of a generated family."""
    gen = arith_example if family == "arith" else code_example
    rng, seen, out = seeded_rng(WORLD_SEED, family, split), set(), list[Example]()
    while len(out) < POOL_SIZES[family][split]:
        ex = draw(gen, rng, split == "test")
        if ex.key not in seen:
            seen.add(ex.key)
            out.append(ex)
    return tuple(out)


@cache
def pool(family: str, split: str) -> tuple[Example, ...]:
    """All examples of one family and split, in a fixed order."""
    if family not in BUILTIN_FAMILIES:
        raise UserError(f"unknown built-in family {family!r}; choose one of {', '.join(BUILTIN_FAMILIES)}")
    if split not in ("train", "test"):
        raise UserError(f"unknown split {split!r}; choose 'train' or 'test'")
    if family != "choice":
        return _draw_pool(family, split)
    ents = entities()
    return tuple(choice_example(ents[i], a, seeded_rng(WORLD_SEED, i, a)) for i, a in choice_keys()[split])


def few_shot_prompt(shots: Sequence[Example], target: Example) -> str:
    """Solved examples, then the target's question and cue."""
    return EXAMPLE_SEPARATOR.join([*(s.text for s in shots), target.prompt])


def chat_turns(shots: Sequence[Example], target: Example) -> tuple[tuple[tuple[str, str], ...], str]:
    """The few-shot prompt as a conversation: each solved example a user question and an assistant answer
    (cue included), then the target's question; and the target's cue (the prompt's last line)."""
    turns: list[tuple[str, str]] = []
    for ex in (*shots, target):
        question, _, cue = ex.prompt.rpartition("\n")
        turns.append(("user", question))
        if ex is not target:
            turns.append(("assistant", cue + ex.answer))
    return tuple(turns), target.prompt.rpartition("\n")[2]


def _shots_for(family: str, key: str, seed: int, count: int) -> list[Example]:
    """Seeded few-shot examples from the train split, never the target itself."""
    train = pool(family, "train")
    picks = seeded_rng(seed, family, key).sample(range(len(train)), count + 1)
    return [train[i] for i in picks if train[i].key != key][:count]


_CHECKERS: dict[str, Checker] = {"arith": check_numeric, "choice": check_choice, "code": check_code}


def load_builtin(
    family: str, *, split: str = "test", samples: int | None = None, seed: int = 0, shots: int | None = None
) -> Task:
    """A built-in task: a seeded subset of one split with few-shot prompts from the train split."""
    items_pool = pool(family, split)
    indices = list(range(len(items_pool)))
    if samples is not None and samples < len(indices):
        indices = sorted(seeded_rng(seed, family, split, "samples").sample(indices, samples))
    n_shots = DEFAULT_SHOTS if shots is None else shots
    items = []
    for i in indices:
        ex = items_pool[i]
        solved = _shots_for(family, ex.key, seed, n_shots)
        chat, cue = chat_turns(solved, ex)
        prompt = few_shot_prompt(solved, ex)
        items.append(TaskItem(f"{family}-{split}-{i}", prompt, ex.reference, ex.extra, chat, cue))
    return Task(f"builtin:{family}", tuple(items), STOP_STRINGS, _CHECKERS[family])
