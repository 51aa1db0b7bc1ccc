"""Code checks whose verdict the generated code cannot forge: the sandbox only ever sees calls, never answers.

Why not "run program + asserts in the sandbox and trust its exit status": whatever runs inside can end
with status 0, print "passed", or read any nonce or descriptor the runner holds there (in the old
checker, from the runner's own frames). So no verdict is taken from inside. Instead:

1. **Plan (here, on the ASTs of trusted text).** The *candidates* are the names the tests use that the
   generated code provides: HumanEval's entry point (or, for a prompt that ends in a function head, that
   function), else every name the tests read but neither bind themselves nor get from the prompt's
   context (builtins only where the program redefines them). Two versions of the tests are derived,
   both with every candidate name rewritten to a harness lookup:
   - the *recording* tests: each `assert` is replaced by the candidate calls it makes (each in its own
     `try`), and assignments that only fed asserts are dropped, so no expected value goes inside;
   - the *checking* tests: the tests as written.
2. **Record (sandbox, with the program).** The program runs, then the recording tests; each call of a
   candidate is recorded as (callee, canonical arguments, returned value or exception type).
3. **Decide, never inside the program's sandbox:**
   - *outside*, when every assert has the form `assert f(args) == LITERAL` (MBPP, `builtin:code`): the
     expected literals are evaluated here (`ast.literal_eval`) and compared with the recorded values,
     one call per assert, in order;
   - otherwise (HumanEval's `check(candidate)`, `math.isclose`, loops over random inputs) in a *second
     sandbox run that holds no generated code*: the prompt's context and the full tests run with each
     candidate replaced by a replayer answering from the recording (same seeded `random` stream, so
     the same arguments come up); a call the recording lacks fails. Its verdict is trustworthy because
     nothing of the program runs there; the recording is plain data (tagged JSON, see `harness`).

So a program that exits early, prints "passed", forges records or reads the harness's frames can pass
only by supplying the right value for every call, which is what the check asks for. There is no
fallback that trusts a verdict computed inside: every test shape above decomposes into calls and a
check run without the program; where the replay cannot match a call (arguments built from state the
program changed), the answer fails, it never passes by default.

Differences from running the asserts beside the program, all toward failing: a value that cannot cross
as data (a custom object, a generator) is equal to nothing; a candidate that changes its arguments in
place is not seen to do so by the tests; exceptions cross as their built-in type only.
"""

from __future__ import annotations

import ast
import builtins
import threading
from dataclasses import dataclass
from typing import Any

from collector.tasks.harness import LOOKUP, decode
from collector.tasks.sandbox import DEFAULT_MEMORY_MB, SandboxRun, run_job
from warehouse.errors import UserError

_BUILTINS = frozenset(dir(builtins))
_NO_LITERAL = object()


@dataclass(frozen=True)
class CheckPlan:
    """What runs where for one answer (see the module docstring)."""

    program: str  # the prompt's prefix and the answer: runs only in the recording sandbox
    context: str  # the prefix without the completed function: trusted, runs before the checking tests
    recording: str  # the tests reduced to their candidate calls (no expected values)
    checking: str  # the tests as written, candidates looked up through the harness
    expected: tuple[tuple[str, Any], ...] | None  # (callee, literal) per assert, when decidable here


@dataclass(frozen=True)
class CodeVerdict:
    """The verdict on one answer, why, and the sandbox runs behind it."""

    passed: bool
    reason: str
    runs: tuple[SandboxRun, ...]


def plan_check(prefix: str, body: str, tests: str, entry_point: str | None = None) -> CheckPlan:
    """Split one code check into the recording run, the checking run and (if possible) expected literals."""
    try:
        test_tree = _parse(tests)
    except SyntaxError as exc:
        raise UserError(f"the item's tests are not valid Python ({exc.msg} at line {exc.lineno})") from exc
    context_tree, completed = _context(prefix, entry_point)
    program = prefix + body
    candidates = _candidates(test_tree, context_tree, _top_bound(_parse_or_empty(program)), completed)
    driving = candidates | _parameters_given(test_tree, candidates)
    expected = _expected_literals(test_tree, candidates, driving)
    recording = _Rewrite(candidates).visit(_drop_dead(_StripAsserts(driving).visit(_copy(test_tree))))
    checking = _Rewrite(candidates).visit(_copy(test_tree))
    return CheckPlan(
        program=program,
        context=ast.unparse(context_tree),
        recording=ast.unparse(ast.fix_missing_locations(recording)),
        checking=ast.unparse(ast.fix_missing_locations(checking)),
        expected=expected,
    )


def judge(plan: CheckPlan, *, timeout_s: float, memory_mb: int = DEFAULT_MEMORY_MB) -> CodeVerdict:
    """Record the program's calls in the sandbox, then decide outside or in a sandbox without the program."""
    job = {"mode": "record", "program": plan.program, "tests": plan.recording}
    recorded = run_job(job, timeout_s=timeout_s, memory_mb=memory_mb)
    failure = _recording_failure(recorded, timeout_s)
    if failure:
        return CodeVerdict(False, failure, (recorded,))
    calls = [r for r in recorded.records if r.get("kind") in ("call", "module", "value")]
    if plan.expected is not None:
        return CodeVerdict(*_compare(calls, plan.expected), (recorded,))
    replay = {"mode": "replay", "context": plan.context, "tests": plan.checking, "records": calls}
    checked = run_job(replay, timeout_s=timeout_s, memory_mb=memory_mb)
    last = checked.records[-1] if checked.records else {}
    if checked.timed_out:
        return CodeVerdict(False, f"timeout: the check took over {timeout_s:g} s", (recorded, checked))
    if last.get("kind") == "passed" and checked.returncode == 0:
        return CodeVerdict(True, "passed", (recorded, checked))
    said = last.get("error") or f"the check ended with status {checked.returncode}: {checked.output[-300:]}"
    kind = "error" if last.get("kind") == "context_error" else "failed"
    return CodeVerdict(False, f"{kind}: {said}", (recorded, checked))


def _recording_failure(run: SandboxRun, timeout_s: float) -> str | None:
    kinds = [r.get("kind") for r in run.records]
    if run.timed_out:
        return f"timeout: still running after {timeout_s:g} s (wall clock); sandbox killed"
    if "program_error" in kinds:
        error = next(r for r in run.records if r.get("kind") == "program_error").get("error")
        return f"failed: the program raised {error}"
    if "ran" not in kinds:
        return f"failed: the program ended early (exit status {run.returncode}): {run.output[-300:]}"
    return None


def _compare(calls: list[dict[str, Any]], expected: tuple[tuple[str, Any], ...]) -> tuple[bool, str]:
    if len(calls) != len(expected):
        return False, f"failed: {len(calls)} recorded calls for {len(expected)} asserts"
    for i, (call, (name, want)) in enumerate(zip(calls, expected, strict=True), 1):
        if call.get("kind") != "call" or call.get("name") != name:
            return False, f"failed: assert {i} expected a call of {name}"
        if "raised" in call:
            return False, f"failed: assert {i}: {name} raised {call['raised']}"
        try:  # plain data on both sides: Python's own equality, as the assert had
            got = decode(call.get("value"))
            same = bool(got == want)
        except (RecursionError, MemoryError):  # a forged record nested too deep to compare
            return False, f"failed: assert {i}: {name}'s recorded value cannot be compared"
        if not same:
            return False, f"failed: assert {i}: {name} returned {_short(got)}, expected {_short(want)}"
    return True, "passed"


def _short(value: object) -> str:
    try:
        text = repr(value)
    except (RecursionError, ValueError):
        return "<too deep or too large to show>"
    return text if len(text) <= 80 else text[:77] + "..."


# ------------------------------------------------------------------------------------ AST planning


# CPython 3.11's AST validation keeps its recursion depth in interpreter-wide state, so two threads
# parsing at once can fail with "AST constructor recursion depth mismatch": checks run from a thread pool.
_AST_LOCK = threading.Lock()


def _parse(source: str) -> ast.Module:
    """ast.parse, one thread at a time."""
    with _AST_LOCK:
        return ast.parse(source)


def _copy(tree: ast.Module) -> ast.Module:
    return _parse(ast.unparse(tree))


def _parse_or_empty(source: str) -> ast.Module:
    try:
        return _parse(source)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return ast.Module(body=[], type_ignores=[])  # the recording run reports the error


def _context(prefix: str, entry_point: str | None) -> tuple[ast.Module, str | None]:
    """The prefix without the function the answer completes (a bare head gets a placeholder body)."""
    if not prefix.strip():
        return ast.Module(body=[], type_ignores=[]), entry_point
    try:
        tree = _parse(prefix)
    except SyntaxError:
        tree = _parse(prefix + "\n    ...\n")
    functions = [s.name for s in tree.body if isinstance(s, (ast.FunctionDef, ast.AsyncFunctionDef))]
    completed = entry_point or (functions[-1] if functions else None)
    tree.body = [s for s in tree.body if getattr(s, "name", None) != completed]
    return tree, completed


def _bound_anywhere(tree: ast.AST) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and not isinstance(node.ctx, ast.Load):
            names.add(node.id)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.arg):
            names.add(node.arg)
        elif isinstance(node, ast.alias):
            names.add((node.asname or node.name).split(".")[0])
        elif isinstance(node, (ast.ExceptHandler, ast.MatchAs, ast.MatchStar)) and node.name:
            names.add(node.name)
    return names


def _top_bound(tree: ast.Module) -> set[str]:
    """Names a module binds at its top level (functions' insides not included)."""
    names: set[str] = set()
    for statement in tree.body:
        if isinstance(statement, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(statement.name)
        else:
            names |= _bound_anywhere(statement)
    return names


def _loaded(tree: ast.AST) -> set[str]:
    return {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}


def _candidates(
    tests: ast.Module, context: ast.Module, program_bound: set[str], completed: str | None
) -> set[str]:
    """The names the tests take from the generated code."""
    free = _loaded(tests) - _bound_anywhere(tests) - _top_bound(context)
    found = {n for n in free if n not in _BUILTINS or n in program_bound}
    return found | ({completed} & _loaded(tests) if completed else set())


def _parameters_given(tests: ast.Module, candidates: set[str]) -> set[str]:
    """Parameters of the tests' own functions that receive a candidate (HumanEval's `check(candidate)`)."""
    functions = {s.name: s for s in tests.body if isinstance(s, ast.FunctionDef)}
    names: set[str] = set()
    for node in ast.walk(tests):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in functions:
            params = [*functions[node.func.id].args.posonlyargs, *functions[node.func.id].args.args]
            for arg, param in zip(node.args, params, strict=False):
                if isinstance(arg, ast.Name) and arg.id in candidates:
                    names.add(param.arg)
    return names


def _driving_calls(node: ast.AST, driving: set[str]) -> list[ast.Call]:
    """The outermost calls of a driving name within `node` (their arguments are evaluated with them)."""
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in driving:
        return [node]
    return [call for child in ast.iter_child_nodes(node) for call in _driving_calls(child, driving)]


class _StripAsserts(ast.NodeTransformer):
    """Each assert becomes its driving calls, each in `try: ... except Exception: pass`."""

    def __init__(self, driving: set[str]) -> None:
        self.driving = driving

    def visit_Assert(self, node: ast.Assert) -> list[ast.stmt]:
        calls = _driving_calls(node.test, self.driving)
        if not calls:
            return [ast.Pass()]
        handler = ast.ExceptHandler(type=ast.Name("Exception", ast.Load()), name=None, body=[ast.Pass()])
        return [ast.Try(body=[ast.Expr(c)], handlers=[handler], orelse=[], finalbody=[]) for c in calls]


def _drop_dead(tree: ast.Module) -> ast.Module:
    """Drop local assignments nothing reads any more whose value calls only builtins (an expected sum).

    Only inside the tests' functions: a top-level assignment may be read by the program (MBPP setup)."""
    pure = _BUILTINS - _bound_anywhere(tree)
    functions = [s for s in tree.body if isinstance(s, (ast.FunctionDef, ast.AsyncFunctionDef))]
    while True:
        loaded = _loaded(tree)
        dead = [
            node
            for function in functions
            for node in ast.walk(function)
            if isinstance(node, ast.Assign)
            and all(isinstance(t, ast.Name) and t.id not in loaded for t in node.targets)
            and all(
                isinstance(c.func, ast.Name) and c.func.id in pure
                for c in ast.walk(node.value)
                if isinstance(c, ast.Call)
            )
        ]
        if not dead:
            return tree
        ids = {id(node) for node in dead}
        for node in ast.walk(tree):
            for field in ("body", "orelse", "finalbody"):
                block = getattr(node, field, None)
                if isinstance(block, list) and any(id(s) in ids for s in block):
                    setattr(node, field, [s for s in block if id(s) not in ids] or [ast.Pass()])


class _Rewrite(ast.NodeTransformer):
    """`name` -> `LOOKUP("name")` for every candidate read."""

    def __init__(self, candidates: set[str]) -> None:
        self.candidates = candidates

    def visit_Name(self, node: ast.Name) -> ast.expr:
        if node.id in self.candidates and isinstance(node.ctx, ast.Load):
            return ast.Call(ast.Name(LOOKUP, ast.Load()), [ast.Constant(node.id)], [])
        return node


def _expected_literals(
    tests: ast.Module, candidates: set[str], driving: set[str]
) -> tuple[tuple[str, Any], ...] | None:
    """(callee, expected) per assert where every assert is `f(args) == LITERAL`, else None."""
    asserts = [s for s in tests.body if isinstance(s, ast.Assert)]
    if not asserts or len(asserts) != sum(isinstance(n, ast.Assert) for n in ast.walk(tests)):
        return None
    if any(_driving_calls(s, driving) for s in tests.body if not isinstance(s, ast.Assert)):
        return None
    expected = []
    for statement in asserts:
        test = statement.test
        if not (isinstance(test, ast.Compare) and len(test.ops) == 1 and isinstance(test.ops[0], ast.Eq)):
            return None
        for call, other in ((test.left, test.comparators[0]), (test.comparators[0], test.left)):
            value = _literal(other)
            if (
                _driving_calls(call, driving) == [call]
                and isinstance(call, ast.Call)
                and value is not _NO_LITERAL
            ):
                inner = [n for arg in ast.iter_child_nodes(call) for n in _driving_calls(arg, driving)]
                if not inner and isinstance(call.func, ast.Name) and call.func.id in candidates:
                    expected.append((call.func.id, value))
                    break
        else:
            return None
    return tuple(expected)


def _literal(node: ast.expr) -> Any:
    try:
        return ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return _NO_LITERAL
