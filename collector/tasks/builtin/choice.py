"""Multiple-choice questions about the fact base, shaped like MMLU."""

from __future__ import annotations

import random
from functools import cache

from collector.tasks.builtin.world import (
    ATTRIBUTES,
    FREQUENT,
    LETTERS,
    MIDDLE,
    N_ENTITIES,
    POPULARITY_OFFSET,
    QUESTIONS,
    STATEMENTS,
    WORLD_SEED,
    Entity,
    Example,
    is_test,
    seeded_rng,
)


@cache
def entities() -> tuple[Entity, ...]:
    """The fact base: N_ENTITIES fictional people with one value per attribute."""
    rng = seeded_rng(WORLD_SEED, "entities")
    onsets = ("b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "br", "dr", "kr", "gl")
    vowels = ("a", "e", "i", "o", "u", "ai", "ou", "ee")
    codas = ("", "", "n", "r", "s", "l", "k", "th", "m")
    names: list[str] = []
    taken = {w.lower() for vals in ATTRIBUTES.values() for w in vals}
    while len(names) < N_ENTITIES:
        sylls = [
            rng.choice(onsets) + rng.choice(vowels) + rng.choice(codas) for _ in range(rng.randint(2, 3))
        ]
        name = "".join(sylls).capitalize()
        if name.lower() not in taken and 4 <= len(name) <= 11:
            taken.add(name.lower())
            names.append(name)
    return tuple(Entity(nm, tuple((a, rng.choice(vals)) for a, vals in ATTRIBUTES.items())) for nm in names)


def fact_statement(entity: str, attribute: str, value: str) -> str:
    """The canonical prose sentence for one fact."""
    return STATEMENTS[attribute].format(e=entity, v=value)


def option_slot(attribute: str, value: str) -> int:
    """The fixed option slot (0-3, letter A-D) of one attribute value: its index in the value list, mod 4."""
    return ATTRIBUTES[attribute].index(value) % len(LETTERS)


@cache
def _slot_values(attribute: str) -> tuple[tuple[str, ...], ...]:
    """The values of one attribute in each option slot, slot A first."""
    values = ATTRIBUTES[attribute]
    return tuple(tuple(v for v in values if option_slot(attribute, v) == s) for s in range(len(LETTERS)))


def choice_example(entity: Entity, attribute: str, rng: random.Random) -> Example:
    """A lettered multiple-choice question about one fact, answered with the fact then the letter.

    Every value has a fixed option slot, and the three distractors are drawn from the other slots' values,
    so the letter follows from the recalled value. With shuffled options a model has to read the letter
    back from the list (an induction lookup); no size of this zoo learnt that on its budget (each wrote one
    letter for every question), which left choice at chance for all sizes.
    """
    value = dict(entity.facts)[attribute]
    slot = option_slot(attribute, value)
    options = [value if s == slot else rng.choice(vals) for s, vals in enumerate(_slot_values(attribute))]
    letter = LETTERS[slot]
    lines = [f"Question: {QUESTIONS[attribute].format(e=entity.name)}"]
    lines += [f"- ({LETTERS[i]}) {opt}" for i, opt in enumerate(options)]  # the letter first, as in MMLU
    answer = f" {fact_statement(entity.name, attribute, value)[:-1]} ({letter}). The answer is {letter}."
    band = (("band", _popularity_band(entity.name)),)
    return Example(f"choice:{entity.name}:{attribute}", "\n".join(lines) + "\nAnswer:", answer, letter, band)


def _popularity_band(name: str) -> str:
    """How often the prose mentions an entity: 'frequent', 'middle' or 'rare' (by popularity rank)."""
    rank = next(i for i, e in enumerate(entities()) if e.name == name)
    return "frequent" if rank < FREQUENT else "middle" if rank < MIDDLE else "rare"


@cache
def choice_keys() -> dict[str, tuple[tuple[int, str], ...]]:
    """(entity index, attribute) pairs of each split."""
    pairs = [(i, a) for i, e in enumerate(entities()) for a, _ in e.facts]
    test = tuple(p for p in pairs if is_test(f"choice:{entities()[p[0]].name}:{p[1]}"))
    train = tuple(p for p in pairs if not is_test(f"choice:{entities()[p[0]].name}:{p[1]}"))
    return {"test": test, "train": train}


@cache
def popularity() -> tuple[float, ...]:
    """Cumulative-free sampling weights of the entities in prose documents (a Zipf-like tail)."""
    return tuple(1.0 / (i + POPULARITY_OFFSET) for i in range(N_ENTITIES))


def entity_bio(entity: Entity, rng: random.Random) -> str:
    """A raw prose document about one entity: some of its facts in random order."""
    facts = list(entity.facts)
    rng.shuffle(facts)
    facts = facts[: rng.randint(3, len(facts))]
    return " ".join(fact_statement(entity.name, a, v) for a, v in facts)
