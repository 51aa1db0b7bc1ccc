"""The built-in tasks' fixed world: families, splits, the fact base's vocabulary, example records."""

from __future__ import annotations

import random
import zlib
from dataclasses import dataclass

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


def is_test(key: str) -> bool:
    """Stable split of problem keys: about TEST_PERCENT % of each family's keys go to the test split."""
    return zlib.crc32(f"{WORLD_SEED}:{key}".encode()) % 100 < TEST_PERCENT[key.split(":", 1)[0]]


def seeded_rng(*parts: object) -> random.Random:
    """A Random seeded from a stable string of parts."""
    return random.Random(":".join(str(p) for p in parts))
