"""Answer checkers: numeric (GSM8K), multiple choice (MMLU) and code that must pass tests (MBPP, HumanEval).

`check_code` reads these extras of a `TaskItem`:
- `prefix`: code the output continues (HumanEval: the prompt's signature and docstring); empty when the
  output is a whole program (MBPP);
- `tests`: code run after the program (newline-joined asserts; HumanEval: the `check` function and the
  call `check(entry_point)`); required;
- `entry_point`: the function the tests check (HumanEval); else the function the prefix opens, or
  (no prefix) whatever the tests call that the program defines;
- `timeout_s`: wall-clock limit of each sandbox run (default `CODE_TIMEOUT_S`).
How the verdict is reached without trusting anything inside the sandbox: `collector.tasks.codecheck`.
"""

from __future__ import annotations

import math
import re

from collector.tasks.base import TaskItem
from collector.tasks.codecheck import CodeVerdict, judge, plan_check
from warehouse.errors import UserError

CODE_TIMEOUT_S = 3.0
# Where a whole-program answer ends (MBPP's [DONE] marker, a closing markdown fence, a new prompt).
CODE_STOPS = ("[DONE]", "```", "[BEGIN]", "\nYou are an expert Python programmer")

_NUMBER = re.compile(r"-?\$?\d[\d,]*(?:\.\d+)?")
_ANSWER_IS = re.compile(r"the (?:final )?answer is", re.IGNORECASE)
_CHOICE_PATTERNS = (
    re.compile(r"^\s*\(?([A-D])\)?(?=[\s.:,)]|$)"),  # leading "B", "(B)", "B."
    re.compile(r"answer(?:\s+is)?\s*[:=]?\s*\(?([A-D])\b", re.IGNORECASE),  # "Answer: B", "the answer is (B)"
    re.compile(r"\(([A-D])\)"),  # "(B)" anywhere
    re.compile(r"(?:^|\s)([A-D])[.)](?=\s|$)"),  # "B." or "B)" as a word
)


def extract_number(output: str) -> float | None:
    """The answer number of a GSM8K-style output: after '####', after 'The answer is', else the last one."""
    if "####" in output:
        found = _first_number(output.split("####", 1)[1])
        if found is not None:
            return found
    marks = list(_ANSWER_IS.finditer(output))
    if marks:
        found = _first_number(output[marks[-1].end() :])
        if found is not None:
            return found
    numbers = _NUMBER.findall(output)
    return _to_float(numbers[-1]) if numbers else None


def _first_number(text: str) -> float | None:
    match = _NUMBER.search(text)
    return _to_float(match.group()) if match else None


def _to_float(text: str) -> float | None:
    cleaned = text.replace(",", "").replace("$", "").replace(" ", "")
    try:
        return float(cleaned)
    except ValueError:
        return None


def check_numeric(item: TaskItem, output: str) -> bool:
    """The output's answer number equals the item's reference number."""
    if item.reference is None:
        return False
    expected = _to_float(item.reference.strip())
    got = extract_number(output)
    if expected is None or got is None:
        return False
    return math.isclose(got, expected, rel_tol=1e-9, abs_tol=1e-6)


def extract_choice(output: str) -> str | None:
    """The first option letter A-D that the output commits to, or None."""
    best: tuple[int, str] | None = None
    for pattern in _CHOICE_PATTERNS:
        match = pattern.search(output)
        if match and (best is None or match.start(1) < best[0]):
            best = (match.start(1), match.group(1))
    return best[1] if best else None


def check_choice(item: TaskItem, output: str) -> bool:
    """The output's option letter equals the item's reference letter."""
    if item.reference is None:
        return False
    return extract_choice(output) == item.reference.strip().upper()


def cut_code(output: str, *, continues_function: bool) -> str:
    """Cut a code answer at its end: stop markers, and for a function body the first unindented line."""
    text = output
    fence = re.match(r"\s*```[a-zA-Z0-9_+-]*\n", text)
    if fence and not continues_function:
        text = text[fence.end() :]
    for stop in CODE_STOPS:
        text = text.split(stop, 1)[0]
    if not continues_function:
        return text
    lines = text.splitlines(keepends=True)
    for i, line in enumerate(lines):
        if i > 0 and line.strip() and not line[0].isspace():
            return "".join(lines[:i])
    return text


def _parts(item: TaskItem, output: str) -> tuple[str, str, str]:
    """(prefix, cut output, tests) of a code item."""
    tests = item.get("tests")
    if not tests:
        raise UserError(
            f"item {item.item_id} has no 'tests' extra; code items need their test code to be checked"
        )
    prefix = item.get("prefix") or ""
    return prefix, cut_code(output, continues_function=bool(prefix.strip())), tests


def build_program(item: TaskItem, output: str) -> str:
    """The program and its tests as one text: prefix, the cut output, then the item's tests."""
    prefix, body, tests = _parts(item, output)
    return f"{prefix}{body}\n\n{tests}\n"


def code_verdict(item: TaskItem, output: str) -> CodeVerdict:
    """The verdict on a code answer, with its reason (see `collector.tasks.codecheck`)."""
    prefix, body, tests = _parts(item, output)
    plan = plan_check(prefix, body + "\n", tests, item.get("entry_point"))
    return judge(plan, timeout_s=float(item.get("timeout_s") or CODE_TIMEOUT_S))


def check_code(item: TaskItem, output: str) -> bool:
    """The output, after the item's prefix, gives the values its tests expect (in the sandbox)."""
    return code_verdict(item, output).passed
