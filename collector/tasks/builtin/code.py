"""Small Python functions to write, shaped like MBPP, checked by running their tests."""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from functools import cache

from collector.tasks.builtin.world import Example

# family: (description, expression, argument kind, reference implementation of (x, k, c)), listed from the
# most to the least frequent in training text: idioms such as a digit sum or an argmax are rare, so how many
# of them a model can write grows with its capacity (test items draw every family equally often).
CODE_FAMILIES: dict[str, tuple[str, str, str, Callable[..., object]]] = {
    "add": ("returns {p} plus {k}", "{p} + {k}", "int", lambda x, k, c: x + k),
    "sum": ("returns the sum of the list {p}", "sum({p})", "list", lambda x, k, c: sum(x)),
    "rev": ("returns the string {p} reversed", "{p}[::-1]", "str", lambda x, k, c: x[::-1]),
    "sub": ("returns {p} minus {k}", "{p} - {k}", "int", lambda x, k, c: x - k),
    "max": ("returns the largest number in the list {p}", "max({p})", "list", lambda x, k, c: max(x)),
    "upper": ("returns the string {p} in upper case", "{p}.upper()", "str", lambda x, k, c: x.upper()),
    "mul": ("returns {p} times {k}", "{p} * {k}", "int", lambda x, k, c: x * k),
    "min": ("returns the smallest number in the list {p}", "min({p})", "list", lambda x, k, c: min(x)),
    "count": (
        "counts the letter '{c}' in the string {p}", "{p}.count('{c}')", "str", lambda x, k, c: x.count(c),
    ),
    "gt": ("checks if {p} is greater than {k}", "{p} > {k}", "int", lambda x, k, c: x > k),
    "len": ("returns the length of the list {p}", "len({p})", "list", lambda x, k, c: len(x)),
    "slen": ("returns the length of the string {p}", "len({p})", "str", lambda x, k, c: len(x)),
    "div": ("checks if {p} is divisible by {k}", "{p} % {k} == 0", "int", lambda x, k, c: x % k == 0),
    "head": ("returns the first {k} items of the list {p}", "{p}[:{k}]", "list", lambda x, k, c: x[:k]),
    "first": ("returns the first letter of the string {p}", "{p}[0]", "str", lambda x, k, c: x[0]),
    "double": ("returns {p} doubled", "{p} * 2", "int", lambda x, k, c: x * 2),
    "scale": (
        "returns the list {p} with each number times {k}", "[v * {k} for v in {p}]", "list",
        lambda x, k, c: [v * k for v in x],
    ),
    "rep": ("returns the string {p} repeated {k} times", "{p} * {k}", "str", lambda x, k, c: x * k),
    "square": ("returns the square of {p}", "{p} * {p}", "int", lambda x, k, c: x * x),
    "last": ("returns the last item of the list {p}", "{p}[-1]", "list", lambda x, k, c: x[-1]),
    "lastch": ("returns the last letter of the string {p}", "{p}[-1]", "str", lambda x, k, c: x[-1]),
    "half": ("returns half of {p} rounded down", "{p} // 2", "int", lambda x, k, c: x // 2),
    "sort": ("returns the list {p} sorted", "sorted({p})", "list", lambda x, k, c: sorted(x)),
    "prefix": ("returns the first {k} letters of the string {p}", "{p}[:{k}]", "str", lambda x, k, c: x[:k]),
    "even": ("checks if {p} is even", "{p} % 2 == 0", "int", lambda x, k, c: x % 2 == 0),
    "shift": (
        "returns the list {p} with {k} added to each number", "[v + {k} for v in {p}]", "list",
        lambda x, k, c: [v + k for v in x],
    ),
    "starts": (
        "checks if the string {p} starts with '{c}'", "{p}.startswith('{c}')", "str",
        lambda x, k, c: x.startswith(c),
    ),
    "mod": ("returns the remainder of {p} divided by {k}", "{p} % {k}", "int", lambda x, k, c: x % k),
    "tail": ("returns the list {p} without its first item", "{p}[1:]", "list", lambda x, k, c: x[1:]),
    "drop": (
        "returns the string {p} without the letter '{c}'", "{p}.replace('{c}', '')", "str",
        lambda x, k, c: x.replace(c, ""),
    ),
    "lastdig": ("returns the last digit of {p}", "{p} % 10", "int", lambda x, k, c: x % 10),
    "lrev": ("returns the list {p} reversed", "{p}[::-1]", "list", lambda x, k, c: x[::-1]),
    "cap": (
        "returns the string {p} with its first letter in upper case", "{p}.capitalize()", "str",
        lambda x, k, c: x.capitalize(),
    ),
    "larger": ("returns the larger of {p} and {k}", "max({p}, {k})", "int", lambda x, k, c: max(x, k)),
    "evens": (
        "returns the even numbers of the list {p}", "[v for v in {p} if v % 2 == 0]", "list",
        lambda x, k, c: [v for v in x if v % 2 == 0],
    ),
    "pal": (
        "checks if the string {p} reads the same backwards", "{p} == {p}[::-1]", "str",
        lambda x, k, c: x == x[::-1],
    ),
    "dist": ("returns the distance between {p} and {k}", "abs({p} - {k})", "int", lambda x, k, c: abs(x - k)),
    "above": (
        "returns the numbers of the list {p} greater than {k}", "[v for v in {p} if v > {k}]", "list",
        lambda x, k, c: [v for v in x if v > k],
    ),
    "vowels": (
        "counts the vowels in the string {p}", "sum(1 for ch in {p} if ch in 'aeiou')", "str",
        lambda x, k, c: sum(1 for ch in x if ch in "aeiou"),
    ),
    "cube": ("returns the cube of {p}", "{p} * {p} * {p}", "int", lambda x, k, c: x * x * x),
    "spread": (
        "returns the largest minus the smallest number of the list {p}", "max({p}) - min({p})", "list",
        lambda x, k, c: max(x) - min(x),
    ),
    "ndigits": ("returns the number of digits of {p}", "len(str({p}))", "int", lambda x, k, c: len(str(x))),
    "sumsq": (
        "returns the sum of the squares of the list {p}", "sum(v * v for v in {p})", "list",
        lambda x, k, c: sum(v * v for v in x),
    ),
    "tri": (
        "returns the sum of the numbers from 1 to {p}", "{p} * ({p} + 1) // 2", "int",
        lambda x, k, c: x * (x + 1) // 2,
    ),
    "mean": (
        "returns the mean of the list {p} rounded down", "sum({p}) // len({p})", "list",
        lambda x, k, c: sum(x) // len(x),
    ),
    "digsum": (
        "returns the sum of the digits of {p}", "sum(int(d) for d in str({p}))", "int",
        lambda x, k, c: sum(int(d) for d in str(x)),
    ),
    "argmax": (
        "returns the index of the largest number in the list {p}", "{p}.index(max({p}))", "list",
        lambda x, k, c: x.index(max(x)),
    ),
    "second": (
        "returns the second smallest number of the list {p}", "sorted({p})[1]", "list",
        lambda x, k, c: sorted(x)[1],
    ),
}  # fmt: skip
# Training text mentions family r (0-based, in the order above) with weight 1 / (r + CODE_OFFSET).
CODE_OFFSET = 1
CODE_RANK = {family: rank for rank, family in enumerate(CODE_FAMILIES)}
# Frequency bands by rank, as the fact base has them: the most written idioms, the middle, the rare tail.
CODE_FREQUENT, CODE_MIDDLE = 12, 28
THEN_OPS: dict[str, tuple[str, str, Callable[[int, int], int]]] = {
    "add": ("adds {k}", "+", lambda r, k: r + k),
    "sub": ("subtracts {k}", "-", lambda r, k: r - k),
    "mul": ("multiplies by {k}", "*", lambda r, k: r * k),
}
PARAMS = {
    "int": ("x", "n", "num", "value"),
    "list": ("xs", "nums", "items", "values"),
    "str": ("s", "text", "word"),
}
VERBS = ("get", "calc", "make", "find", "do", "compute", "solve", "apply")
NOUNS = ("value", "result", "item", "thing", "data", "answer", "output", "number", "total", "step")
WORDS = (
    "apple", "banana", "river", "pepper", "mississippi", "letter", "bottle", "summer", "cabbage", "level",
)  # fmt: skip


def _code_input(kind: str, rng: random.Random) -> object:
    """A random test input of one argument kind."""
    if kind == "int":
        return rng.randint(1, 60)
    if kind == "list":
        return [rng.randint(1, 20) for _ in range(rng.randint(3, 6))]
    return rng.choice(WORDS)


@cache
def _numeric_families() -> tuple[str, ...]:
    """Families whose result is an int (not a bool): longer functions continue from them with THEN_OPS."""
    probe = {"int": 12, "list": [3, 8, 5], "str": "banana"}
    results = {f: ref(probe[kind], 3, "a") for f, (_, _, kind, ref) in CODE_FAMILIES.items()}
    return tuple(f for f, r in results.items() if isinstance(r, int) and not isinstance(r, bool))


def _code_body(code: str, thens: Sequence[tuple[str, int]]) -> str:
    """A function body of one to three lines: the expression, then each further operation on `result`."""
    if not thens:
        return f"\n    return {code}"
    lines = [f"\n    result = {code}"]
    lines += [f"\n    result = result {THEN_OPS[op][1]} {k}" for op, k in thens[:-1]]
    op, k = thens[-1]
    return "".join(lines) + f"\n    return result {THEN_OPS[op][1]} {k}"


def _code_reference(
    family: str, thens: Sequence[tuple[str, int]], k: int, c: str
) -> Callable[[object], object]:
    """The reference implementation of one task."""

    def ref(x: object) -> object:
        out = CODE_FAMILIES[family][3](x, k, c)
        for op, kk in thens:
            out = THEN_OPS[op][2](int(out), kk)  # type: ignore[call-overload]
        return out

    return ref


def _code_band(family: str) -> str:
    """How often training text writes a family: 'frequent', 'middle' or 'rare' (by rank)."""
    rank = CODE_RANK[family]
    return "frequent" if rank < CODE_FREQUENT else "middle" if rank < CODE_MIDDLE else "rare"


def _pick_family(rng: random.Random, names: Sequence[str], weighted: bool) -> str:
    """A family among `names`: uniformly (test items) or by training frequency (training text)."""
    if not weighted:
        return rng.choice(list(names))
    return rng.choices(list(names), [1.0 / (CODE_RANK[f] + CODE_OFFSET) for f in names])[0]


def code_example(rng: random.Random, weighted: bool = False) -> tuple[Example, str]:
    """A function task of one to three body lines with asserts, and its raw plain-function form."""
    lines = rng.randint(1, 3)
    family = _pick_family(rng, list(CODE_FAMILIES) if lines == 1 else _numeric_families(), weighted)
    desc, expr, kind, _ = CODE_FAMILIES[family]
    p, k, c = rng.choice(PARAMS[kind]), rng.randint(2, 9), rng.choice("aeiprst")
    thens = tuple((rng.choice(sorted(THEN_OPS)), rng.randint(2, 9)) for _ in range(lines - 1))
    name = f"{rng.choice(VERBS)}_{rng.choice(NOUNS)}{rng.randint(1, 99)}"
    text = ", then ".join([desc.format(p=p, k=k, c=c), *(THEN_OPS[op][0].format(k=kk) for op, kk in thens)])
    body = _code_body(expr.format(p=p, k=k, c=c), thens)
    ref = _code_reference(family, thens, k, c)
    tests = [f"assert {name}({a!r}) == {ref(a)!r}" for a in (_code_input(kind, rng) for _ in range(3))]
    # The prompt ends at the colon: BPE merges a newline with the indentation that follows it.
    head = f"def {name}({p}):"
    prompt = f"Task: Write a function {name}({p}) that {text}.\n{head}"
    extra = (
        ("prefix", head), ("tests", "\n".join(tests)), ("lines", str(lines)), ("band", _code_band(family)),
    )  # fmt: skip
    ex = Example(f"code:{name}({p}):{text}", prompt, body, body.strip(), extra)
    raw = f'{head}\n    """{text[0].upper()}{text[1:]}."""{body}\n\n\n' + "\n".join(tests[1:])
    return ex, raw


def weighted_code(rng: random.Random) -> tuple[Example, str]:
    """A code example drawn by training frequency (for training text)."""
    return code_example(rng, weighted=True)
