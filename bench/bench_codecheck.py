"""Code-check verdicts and cost on a fixed set of answers, to compare two checkers (before and after).

Answers: every HumanEval problem with its reference solution, `return None`, the next problem's solution
and one mutation of its own (the first of `==`→`!=`, `<=`→`<`, ... that applies); the MBPP fixture's
test items with their reference and an unrelated function; `samples` items of `builtin:code` with their
reference and an off-by-one. Verdicts are written as JSON (`task|item|answer` → bool); `--compare` names
another such file and lists every answer whose verdict differs.

    python -m bench.bench_codecheck --out new.json [--samples 100] [--workers 4] [--compare old.json]

To measure a checker of another commit: `git archive COMMIT | tar -x -C /tmp/old`, then run this file from
there with `PYTHONPATH=/tmp/old`.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from collector.tasks import Task, TaskItem, load_task

FIXTURES = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "datasets"
MUTATIONS = (
    ("==", "!="), ("<=", "<"), (">=", ">"), (" < ", " <= "), (" > ", " >= "), ("+ 1", "+ 2"),
    ("True", "False"), ("[::-1]", ""), ("return ", "return -"),
)  # fmt: skip
Case = tuple[Task, TaskItem, str, str]


def cases(samples: int) -> list[Case]:
    """(task, item, answer kind, answer) for every answer of the set."""
    found: list[Case] = []
    mbpp = load_task("mbpp", path=str(FIXTURES / "mbpp.jsonl"))
    for item in mbpp.items:
        found.append((mbpp, item, "ref", f"{item.reference}\n[DONE]"))
        found.append((mbpp, item, "unrelated", "def unrelated():\n    return None\n[DONE]"))
    humaneval = load_task("humaneval")
    items = list(humaneval.items)
    for i, item in enumerate(items):
        reference = item.reference or ""
        found.append((humaneval, item, "ref", reference))
        found.append((humaneval, item, "none", "    return None\n"))
        found.append((humaneval, item, "other", items[(i + 1) % len(items)].reference or ""))
        mutation = next(((a, b) for a, b in MUTATIONS if a in reference), None)
        if mutation:
            found.append((humaneval, item, "mutant", reference.replace(*mutation, 1)))
    code = load_task("builtin:code", samples=samples, seed=0)
    for item in code.items:
        reference = item.reference or ""
        found.append((code, item, "ref", reference))
        found.append((code, item, "off", reference.replace("return ", "return 1 + ", 1)))
    return found


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, required=True, help="where to write the verdicts (JSON)")
    parser.add_argument("--samples", type=int, default=100, help="builtin:code items (default 100)")
    parser.add_argument("--workers", type=int, default=4, help="checks at once (default 4)")
    parser.add_argument("--compare", type=Path, help="another verdict file: list the answers that differ")
    args = parser.parse_args()
    todo = cases(args.samples)

    def timed(case: Case) -> tuple[bool, float]:
        start = time.monotonic()
        verdict = bool(case[0].check(case[1], case[3]))
        return verdict, time.monotonic() - start

    start = time.monotonic()
    with ThreadPoolExecutor(max_workers=args.workers) as pool:
        results = list(pool.map(timed, todo))
    wall = time.monotonic() - start
    verdicts = {
        f"{t.name}|{i.item_id}|{kind}": ok for (t, i, kind, _), (ok, _) in zip(todo, results, strict=True)
    }
    args.out.write_text(json.dumps(verdicts, indent=0, sort_keys=True))
    tally = Counter((key.split("|")[0], key.split("|")[2], ok) for key, ok in verdicts.items())
    for (task, kind, ok), count in sorted(tally.items()):
        print(f"{task:<14} {kind:<10} {'pass' if ok else 'fail'}  {count}")
    per_check = statistics.median(seconds for _, seconds in results)
    print(
        f"{len(todo)} checks in {wall:.1f} s with {args.workers} workers; "
        f"median {per_check * 1000:.0f} ms a check"
    )
    if args.compare:
        other = json.loads(args.compare.read_text())
        differ = sorted(key for key in verdicts.keys() | other.keys() if verdicts.get(key) != other.get(key))
        print(f"{len(differ)} verdicts differ from {args.compare}: {differ}")


if __name__ == "__main__":
    main()
