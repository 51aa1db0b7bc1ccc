"""Arithmetic word problems shaped like GSM8K, drawn from the fixed world."""

from __future__ import annotations

import random

from collector.tasks.builtin.world import GOODS, NAMES, Example

# One step of a word problem: the question's sentence and the solution's worded step with its annotation.
ARITH_STEPS = {
    "add": ("Then {n} buys {b} more.", "{n} has {x} + {b} = <<{x}+{b}={y}>>{y} {g}."),
    "sub": ("Then {n} gives {b} away.", "{n} has {x} - {b} = <<{x}-{b}={y}>>{y} {g}."),
    "mul": ("Then {n} gets {b} times as many.", "{n} has {x} * {b} = <<{x}*{b}={y}>>{y} {g}."),
}


def _number(rng: random.Random, digits: int) -> int:
    """A number of exactly `digits` digits (one-digit numbers start at 2)."""
    return rng.randint(2 if digits == 1 else 10 ** (digits - 1), 10**digits - 1)


def _arith_ops(rng: random.Random, digits: int, steps: int) -> tuple[int, tuple[tuple[str, int], ...]]:
    """A start value of `digits` digits and `steps` one-digit operations keeping every result positive."""
    x = start = _number(rng, digits)
    ops: list[tuple[str, int]] = []
    for _ in range(steps):
        # Subtract only an amount below x (clamping it would make 1 a frequent, guessable answer); multiply
        # only one-digit values, so every product is a times-table fact.
        b = _number(rng, 1)
        kind = rng.choice(["add"] + (["sub"] if b < x else []) + (["mul"] if x < 10 else []))
        if kind == "mul":
            b = rng.randint(2, 5)
        x = x + b if kind == "add" else x - b if kind == "sub" else x * b
        ops.append((kind, b))
    return start, tuple(ops)


# Difficulty level -> (digits of the start value, steps). Level 1 is one step over one-digit numbers (a few
# hundred facts a small model can hold); level 2 one step from a two-digit value (carries and borrows);
# level 3 two steps, the second over the first's (often two-digit) result.
ARITH_LEVELS = {1: (1, 1), 2: (2, 1), 3: (1, 2)}


def arith_example(rng: random.Random) -> tuple[Example, str]:
    """A word problem of level one to three (see ARITH_LEVELS), and its raw worked form."""
    level = rng.randint(1, 3)
    digits, steps = ARITH_LEVELS[level]
    start, ops = _arith_ops(rng, digits, steps)
    n, g = rng.choice(NAMES), rng.choice(GOODS)
    story, work, x = [f"{n} has {start} {g}."], [], start
    for kind, b in ops:
        y = x + b if kind == "add" else x - b if kind == "sub" else x * b
        told, worked = ARITH_STEPS[kind]
        story.append(told.format(n=n, b=b))
        work.append(worked.format(n=n, x=x, b=b, y=y, g=g))
        x = y
    question = " ".join([*story, f"How many {g} does {n} have now?"])
    answer = " " + "\n".join(work) + f"\n#### {x}"
    key = f"arith:{n}:{g}:{start}:{ops}"
    levels = (("level", str(level)), ("digits", str(digits)), ("steps", str(steps)))
    ex = Example(key, f"Question: {question}\nAnswer:", answer, str(x), levels)
    return ex, " ".join(story) + "\n" + "\n".join(work)
