"""Built-in tasks shaped like GSM8K, MMLU and MBPP, generated from a fixed world so the zoo can learn them."""

from __future__ import annotations

import random
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache

from collector.tasks.base import Checker, Task, TaskItem
from collector.tasks.checkers import check_choice, check_code, check_numeric
from warehouse.errors import UserError

BUILTIN_FAMILIES: tuple[str, ...] = ("arith", "choice", "code")
# The world (fact base, problem pools, train/test split) is fixed: the zoo's knowledge is about this world.
WORLD_SEED = 2406_12295
DEFAULT_SHOTS = 2
EXAMPLE_SEPARATOR = "\n\n"
STOP_STRINGS: tuple[str, ...] = ("\n\n",)
# Share of each family's problem keys held out for test. Choice holds out more: its knowledge comes from the
# prose, which mentions every fact; only the question/answer pairs of test facts stay out of training.
TEST_PERCENT = {"arith": 15, "choice": 32, "code": 15}
POOL_SIZES = {"arith": {"test": 800, "train": 4000}, "code": {"test": 800, "train": 3000}}

NAMES = (
    "Mia", "Tom", "Ava", "Leo", "Zoe", "Max", "Ivy", "Sam", "Eli", "Ana",
    "Ben", "Lily", "Omar", "Nina", "Raj", "Kim", "Hugo", "Lena", "Noah", "Ruth",
)  # fmt: skip
GOODS = (
    "apples", "pears", "stamps", "marbles", "cards", "books", "shells", "coins",
    "eggs", "pencils", "stickers", "plums", "beads", "nuts", "cookies", "buttons",
)  # fmt: skip
ATTRIBUTES: dict[str, tuple[str, ...]] = {
    "city": (
        "Kemora", "Tolvi", "Drasp", "Uline", "Brannock", "Selvo", "Quarth", "Myrin",
        "Ostrel", "Pellan", "Varo", "Zintha", "Redmarsh", "Ashford", "Lunmere", "Corvale",
    ),
    "job": (
        "baker", "farmer", "pilot", "doctor", "painter", "sailor", "teacher", "miner",
        "singer", "tailor", "potter", "hunter", "weaver", "guard", "cook", "smith",
    ),
    "color": ("red", "blue", "green", "yellow", "purple", "orange", "white", "black", "pink", "gray"),
    "pet": ("cat", "dog", "owl", "fox", "goat", "horse", "rabbit", "parrot", "turtle", "frog"),
    "food": ("bread", "rice", "soup", "fish", "cheese", "beans", "eggs", "honey", "corn", "plums"),
}  # fmt: skip
STATEMENTS = {
    "city": "{e} lives in {v}.",
    "job": "{e} works as a {v}.",
    "color": "{e} likes the color {v}.",
    "pet": "{e} has a pet {v}.",
    "food": "{e} likes to eat {v}.",
}
QUESTIONS = {
    "city": "Where does {e} live?",
    "job": "What is the job of {e}?",
    "color": "Which color does {e} like?",
    "pet": "Which pet does {e} have?",
    "food": "What does {e} like to eat?",
}
N_ENTITIES = 500
# Entity i appears in the corpus's prose with weight 1 / (i + POPULARITY_OFFSET): a long tail of rarely
# mentioned people, so how much of the fact base a model recalls grows with its capacity and budget.
POPULARITY_OFFSET = 8
# Popularity bands by rank: the first FREQUENT entities, the next up to MIDDLE, then the rare tail.
FREQUENT, MIDDLE = 30, 120
LETTERS = "ABCD"


@dataclass(frozen=True)
class Example:
    """One generated problem: the prompt part (question and cue), the answer text and checker data."""

    key: str
    prompt: str
    answer: str
    reference: str
    extra: tuple[tuple[str, str], ...] = ()

    @property
    def text(self) -> str:
        """The solved example as it appears in a few-shot prompt."""
        return self.prompt + self.answer


@dataclass(frozen=True)
class Entity:
    """A fictional person of the fact base and its attribute values."""

    name: str
    facts: tuple[tuple[str, str], ...]


def _is_test(key: str) -> bool:
    """Stable split of problem keys: about TEST_PERCENT % of each family's keys go to the test split."""
    return zlib.crc32(f"{WORLD_SEED}:{key}".encode()) % 100 < TEST_PERCENT[key.split(":", 1)[0]]


def _rng(*parts: object) -> random.Random:
    """A Random seeded from a stable string of parts."""
    return random.Random(":".join(str(p) for p in parts))


# ---------------------------------------------------------------- arith (GSM8K-like)

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


def _arith_example(rng: random.Random) -> tuple[Example, str]:
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


# ---------------------------------------------------------------- choice (MMLU-like)


@cache
def entities() -> tuple[Entity, ...]:
    """The fact base: N_ENTITIES fictional people with one value per attribute."""
    rng = _rng(WORLD_SEED, "entities")
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


def _choice_example(entity: Entity, attribute: str, rng: random.Random) -> Example:
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
def _choice_keys() -> dict[str, tuple[tuple[int, str], ...]]:
    """(entity index, attribute) pairs of each split."""
    pairs = [(i, a) for i, e in enumerate(entities()) for a, _ in e.facts]
    test = tuple(p for p in pairs if _is_test(f"choice:{entities()[p[0]].name}:{p[1]}"))
    train = tuple(p for p in pairs if not _is_test(f"choice:{entities()[p[0]].name}:{p[1]}"))
    return {"test": test, "train": train}


@cache
def _popularity() -> tuple[float, ...]:
    """Cumulative-free sampling weights of the entities in prose documents (a Zipf-like tail)."""
    return tuple(1.0 / (i + POPULARITY_OFFSET) for i in range(N_ENTITIES))


def entity_bio(entity: Entity, rng: random.Random) -> str:
    """A raw prose document about one entity: some of its facts in random order."""
    facts = list(entity.facts)
    rng.shuffle(facts)
    facts = facts[: rng.randint(3, len(facts))]
    return " ".join(fact_statement(entity.name, a, v) for a, v in facts)


# ---------------------------------------------------------------- code (MBPP-like)

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


def _code_example(rng: random.Random, weighted: bool = False) -> tuple[Example, str]:
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


def _weighted_code(rng: random.Random) -> tuple[Example, str]:
    """A code example drawn by training frequency (for training text)."""
    return _code_example(rng, weighted=True)


# ---------------------------------------------------------------- pools and loading


def _draw(gen: Callable[[random.Random], tuple[Example, str]], rng: random.Random, test: bool) -> Example:
    """Draw generated examples until one falls in the wanted split."""
    while True:
        ex, _ = gen(rng)
        if _is_test(ex.key) == test:
            return ex


def _draw_pool(family: str, split: str) -> tuple[Example, ...]:
    """A fixed pool of distinct examples of a generated family."""
    gen = _arith_example if family == "arith" else _code_example
    rng, seen, out = _rng(WORLD_SEED, family, split), set(), list[Example]()
    while len(out) < POOL_SIZES[family][split]:
        ex = _draw(gen, rng, split == "test")
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
    return tuple(_choice_example(ents[i], a, _rng(WORLD_SEED, i, a)) for i, a in _choice_keys()[split])


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
    picks = _rng(seed, family, key).sample(range(len(train)), count + 1)
    return [train[i] for i in picks if train[i].key != key][:count]


_CHECKERS: dict[str, Checker] = {"arith": check_numeric, "choice": check_choice, "code": check_code}


def load_builtin(
    family: str, *, split: str = "test", samples: int | None = None, seed: int = 0, shots: int | None = None
) -> Task:
    """A built-in task: a seeded subset of one split with few-shot prompts from the train split."""
    items_pool = pool(family, split)
    indices = list(range(len(items_pool)))
    if samples is not None and samples < len(indices):
        indices = sorted(_rng(seed, family, split, "samples").sample(indices, samples))
    n_shots = DEFAULT_SHOTS if shots is None else shots
    items = []
    for i in indices:
        ex = items_pool[i]
        solved = _shots_for(family, ex.key, seed, n_shots)
        chat, cue = chat_turns(solved, ex)
        prompt = few_shot_prompt(solved, ex)
        items.append(TaskItem(f"{family}-{split}-{i}", prompt, ex.reference, ex.extra, chat, cue))
    return Task(f"builtin:{family}", tuple(items), STOP_STRINGS, _CHECKERS[family])


# ---------------------------------------------------------------- training text


def _fresh_example(family: str, rng: random.Random) -> Example:
    """A newly drawn train-split example: a train fact with fresh options, or a new generated problem.

    Drawing afresh (rather than repeating the fixed pool) leaves nothing to memorise but the facts: a
    model has to read the options to find the letter, and the description to find the constants.
    """
    if family == "choice":
        keys = _choice_keys()["train"]
        i, attribute = keys[rng.randrange(len(keys))]
        return _choice_example(entities()[i], attribute, rng)
    return _draw(_arith_example if family == "arith" else _weighted_code, rng, test=False)


def _episode(family: str, rng: random.Random) -> str:
    """One to three solved train-split examples of a family in the few-shot format."""
    return EXAMPLE_SEPARATOR.join(_fresh_example(family, rng).text for _ in range(rng.randint(1, 3)))


def _raw_document(family: str, rng: random.Random) -> str:
    """A raw (non-QA) document: worked statements, prose facts or plain functions."""
    if family == "choice":  # a few bios, so a prose document is about as long as the other kinds
        picks = rng.choices(range(N_ENTITIES), _popularity(), k=rng.randint(3, 6))
        return "\n".join(entity_bio(entities()[i], rng) for i in picks)
    gen = _arith_example if family == "arith" else _weighted_code
    parts = []
    for _ in range(rng.randint(2, 4)):
        while True:
            ex, raw = gen(rng)
            if not _is_test(ex.key):
                parts.append(raw)
                break
    return ("\n\n" if family == "arith" else "\n\n\n").join(parts)


# Share of each document kind in the base corpus; QA episodes are a small share, the rest raw text.
QA_WEIGHTS = (0.35, 0.35, 0.3)
BASE_MIX = (("choice", "raw", 0.25), ("arith", "raw", 0.2), ("code", "raw", 0.15), ("any", "qa", 0.4))


def corpus_documents(seed: int = 0, *, tuned: bool = False, count: int = 1000) -> list[str]:
    """`count` training documents from the train split: the base mix, or QA episodes only when tuned."""
    rng = _rng(seed, "corpus", tuned)
    kinds, weights = [(f, k) for f, k, _ in BASE_MIX], [w for _, _, w in BASE_MIX]
    docs = []
    for _ in range(count):
        family, kind = ("any", "qa") if tuned else rng.choices(kinds, weights)[0]
        if family == "any":
            family = rng.choices(BUILTIN_FAMILIES, QA_WEIGHTS)[0]
        docs.append(_episode(family, rng) if kind == "qa" else _raw_document(family, rng))
    return docs
