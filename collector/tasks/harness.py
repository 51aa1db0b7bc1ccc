"""The trusted harness that runs inside the sandbox (standard library only; see `codecheck` for the design).

`python3 -I -S -B harness.py JOB.json` sets its rlimits, then, by the job's mode:
- `record`: runs the generated program, then the tests with their asserts reduced to the calls they
  make (no expected value is in the job); every call to a candidate name (a function the program
  defines and the tests use) goes through a recorder that writes one JSON line: the callee, its
  arguments (canonical encoding) and what came back (encoded value, or the exception's type name).
- `replay`: runs only trusted code (the prompt's context and the full tests) with each candidate name
  bound to a replayer that answers every call with the recorded outcome for the same arguments; a call
  that was never recorded fails the run. The run passes only if the tests end without an error.

Records go to the original stdout; the program's own output is moved to stderr. Values cross the
boundary as tagged JSON (`encode`/`decode`): None, bool, int, float (inf/nan), str, bytes, complex,
list, tuple, set, frozenset, dict; anything else becomes an `Opaque` placeholder equal to nothing.
This module is also imported outside the sandbox for `encode`/`decode`: it imports nothing of ours.
"""

from __future__ import annotations

import builtins
import json
import math
import os
import random
import sys
import types

TYPE_CHECKING = False  # not imported from typing: each import costs start-up time in every sandbox run
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

LOOKUP = "__fsgen_candidate__"  # the rewritten tests call LOOKUP("name") where they named a candidate
TEST_SEED = 20240601  # the tests' `random` stream starts here in both modes
MAX_DEPTH = 64
MAX_RECORD_CHARS = 1 << 20
MAX_ITEMS = 100_000  # an iterator a candidate returns crosses as its first items, if it has no more


class Opaque:
    """A value that cannot cross the boundary (an object of type `kind`): equal to nothing."""

    def __init__(self, kind: str) -> None:
        self.kind = kind

    def __eq__(self, other: object) -> bool:
        return False

    def __hash__(self) -> int:
        return hash(("opaque", self.kind))

    def __repr__(self) -> str:
        return f"<opaque {self.kind}>"


class NotRecorded(BaseException):
    """A replayed call the recording does not hold (a BaseException: `except Exception` cannot hide it)."""


def encode(value: Any, canonical: bool = False, depth: int = 0) -> Any:
    """A JSON-ready form of `value`; `canonical` sorts sets and dicts (for argument keys)."""
    if depth > MAX_DEPTH:
        return {"opaque": "too deep"}
    if value is None or type(value) in (bool, str):
        return value
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, int):
        number = int.__index__(value)
        return number if abs(number).bit_length() < 10_000 else {"int": hex(number)}
    if isinstance(value, float):
        real = float.__float__(value)
        return real if math.isfinite(real) else {"float": repr(real)}
    if isinstance(value, complex):
        return {"complex": [repr(value.real), repr(value.imag)]}
    if isinstance(value, (bytes, bytearray)):
        return {type(value).__name__ if type(value) in (bytes, bytearray) else "bytes": bytes(value).hex()}
    if isinstance(value, Opaque):
        return {"opaque": value.kind}
    return _encode_container(value, canonical, depth)


def _encode_container(value: Any, canonical: bool, depth: int) -> Any:
    def each(items: Any) -> list[Any]:
        return [encode(item, canonical, depth + 1) for item in items]

    if isinstance(value, list):
        return each(list.__iter__(value))
    if isinstance(value, tuple):
        return {"tuple": each(tuple.__iter__(value))}
    if isinstance(value, (set, frozenset)):
        kind = "frozenset" if isinstance(value, frozenset) else "set"
        return {kind: sorted(each(value), key=_sort_key)}
    if isinstance(value, dict):
        pairs = [[encode(k, canonical, depth + 1), encode(v, canonical, depth + 1)] for k, v in value.items()]
        return {"dict": sorted(pairs, key=_sort_key) if canonical else pairs}
    if isinstance(value, range):
        return {"range": [value.start, value.stop, value.step]}
    return {"opaque": type(value).__qualname__}


def _sort_key(item: Any) -> str:
    return json.dumps(item, sort_keys=True)


def decode(data: Any) -> Any:
    """The value `encode` described (containers rebuilt; an unknown tag becomes an `Opaque`)."""
    if isinstance(data, list):
        return [decode(item) for item in data]
    if not isinstance(data, dict):
        return data
    if len(data) != 1:
        return Opaque("malformed")
    ((tag, body),) = data.items()
    decoders: dict[str, Callable[[Any], Any]] = {
        "tuple": lambda b: tuple(decode(x) for x in b),
        "set": lambda b: {decode(x) for x in b},
        "frozenset": lambda b: frozenset(decode(x) for x in b),
        "dict": lambda b: {decode(k): decode(v) for k, v in b},
        "int": lambda b: int(b, 16),
        "float": float,
        "complex": lambda b: complex(float(b[0]), float(b[1])),
        "bytes": bytes.fromhex,
        "bytearray": lambda b: bytearray.fromhex(b),
        "range": lambda b: range(*b),
        "iterator": lambda b: iter(decode(b)),
        "opaque": lambda b: Opaque(str(b)),
    }
    try:
        return decoders[tag](body) if tag in decoders else Opaque(str(tag))
    except (TypeError, ValueError, AttributeError):
        return Opaque("malformed")


def call_key(args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
    """The canonical text of a call's arguments (the same in the recording and the replaying run)."""
    return json.dumps(encode((args, kwargs), canonical=True), sort_keys=True)


# ------------------------------------------------------------------------------------------- inside


def _emit_to(fd: int) -> Callable[[dict[str, Any]], None]:
    owner = os.getpid()

    def emit(entry: dict[str, Any]) -> None:
        if os.getpid() != owner:  # a process the program forked runs on with the harness: it records nothing
            return
        line = json.dumps(entry)
        if len(line) > MAX_RECORD_CHARS:
            line = json.dumps({**entry, "value": {"opaque": "too large"}})
        os.write(fd, (line + "\n").encode())

    return emit


def _set_limits(limits: dict[str, int]) -> None:
    import resource

    def cap(kind: int, value: int) -> None:
        resource.setrlimit(kind, (value, value))

    cap(resource.RLIMIT_AS, limits["memory_bytes"])
    resource.setrlimit(resource.RLIMIT_CPU, (limits["cpu_s"], limits["cpu_s"] + 1))
    cap(resource.RLIMIT_FSIZE, limits["file_bytes"])
    cap(resource.RLIMIT_NPROC, limits["nproc"])
    cap(resource.RLIMIT_NOFILE, 256)
    cap(resource.RLIMIT_CORE, 0)


def _describe(exc: BaseException) -> str:
    message = str(exc)[:300]
    return type(exc).__name__ + (f" ({message})" if message else "")


def _recorder(space: dict[str, Any], emit: Callable[[dict[str, Any]], None]) -> Callable[[str], Any]:
    """LOOKUP for `record`: the program's value of a name, callables wrapped to record each call."""
    wrappers: dict[str, Callable[..., Any]] = {}

    def wrap(name: str, function: Callable[..., Any]) -> Callable[..., Any]:
        def recorded(*args: Any, **kwargs: Any) -> Any:
            key = call_key(args, kwargs)  # before the call: the callee may change its arguments
            state = random.getstate()  # the callee's own draws must not shift the tests' stream
            try:
                result = function(*args, **kwargs)
                if hasattr(type(result), "__next__") and iter(result) is result:  # a generator, map, ...
                    items = [item for _, item in zip(range(MAX_ITEMS + 1), result, strict=False)]
                    result = iter(items)  # the caller gets the same items
                    value = {"iterator": encode(items)} if len(items) <= MAX_ITEMS else {"opaque": "iterator"}
                else:
                    value = encode(result)
            except Exception as exc:
                emit({"kind": "call", "name": name, "key": key, "raised": type(exc).__name__})
                raise
            finally:
                random.setstate(state)
            emit({"kind": "call", "name": name, "key": key, "value": value})
            return result

        return recorded

    def lookup(name: str) -> Any:
        if name not in space:
            raise NameError(f"name {name!r} is not defined")
        value = space[name]
        if isinstance(value, types.ModuleType):
            emit({"kind": "module", "name": name, "module": value.__name__})
            return value
        if not callable(value):
            emit({"kind": "value", "name": name, "value": encode(value)})
            return value
        if name not in wrappers:
            wrappers[name] = wrap(name, value)
        return wrappers[name]

    return lookup


def _replayer(records: list[dict[str, Any]]) -> Callable[[str], Any]:
    """LOOKUP for `replay`: each candidate answers from the recording, nothing of the program runs."""
    calls: dict[tuple[str, str], list[dict[str, Any]]] = {}
    others: dict[str, dict[str, Any]] = {}
    for entry in records:
        name = str(entry.get("name"))
        if entry.get("kind") == "call":
            calls.setdefault((name, str(entry.get("key"))), []).append(entry)
        elif entry.get("kind") in ("module", "value"):
            others.setdefault(name, entry)

    def replay(name: str) -> Callable[..., Any]:
        def replayed(*args: Any, **kwargs: Any) -> Any:
            queue = calls.get((name, call_key(args, kwargs)))
            if not queue:
                raise NotRecorded(f"{name}{args!r} was not called by the program's run")
            outcome = queue.pop(0)
            if "raised" in outcome:
                kind = getattr(builtins, str(outcome["raised"]), None)
                error: type[Exception] = (
                    kind if isinstance(kind, type) and issubclass(kind, Exception) else RuntimeError
                )
                raise error(f"{name} raised {outcome['raised']}")
            return decode(outcome.get("value"))

        return replayed

    def lookup(name: str) -> Any:
        entry = others.get(name)
        if entry is not None and entry["kind"] == "module":
            module = str(entry.get("module"))
            if module.split(".")[0] not in sys.stdlib_module_names:
                raise NotRecorded(f"module {module!r} is not in the standard library")
            return __import__(module, fromlist=["_"])
        if entry is not None:
            return decode(entry.get("value"))
        return replay(name)

    return lookup


def main(job_path: str) -> None:
    """Run one job (see the module docstring); always ends with os._exit (threads are not joined)."""
    with open(job_path, encoding="utf-8") as f:
        job = json.load(f)
    records_fd = os.dup(1)
    os.dup2(2, 1)  # the program's prints go to stderr; stdout carries only the records
    emit = _emit_to(records_fd)
    _set_limits(job["limits"])
    main_module = types.ModuleType("__main__")
    sys.modules["__main__"] = main_module  # so that pickle (multiprocessing) finds the program's names
    space: dict[str, Any] = main_module.__dict__
    space["__builtins__"] = builtins
    if job["mode"] == "record":
        try:
            exec(compile(job["program"], "<program>", "exec"), space)
        except BaseException as exc:  # the program's own failure (SystemExit too: it did not finish)
            emit({"kind": "program_error", "error": _describe(exc)})
            _leave()
        emit({"kind": "ran"})
        space[LOOKUP] = _recorder(space, emit)
    else:
        try:
            exec(compile(job["context"], "<context>", "exec"), space)
        except Exception as exc:  # the dataset's own code: the item is broken, not the answer
            emit({"kind": "context_error", "error": _describe(exc)})
            _leave()
        space[LOOKUP] = _replayer(job["records"])
    random.seed(TEST_SEED)
    try:
        exec(compile(job["tests"], "<tests>", "exec"), space)
    except BaseException as exc:
        emit({"kind": "failed", "error": _describe(exc)})
    else:
        emit({"kind": "passed"})
    _leave()


def _leave() -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    main(sys.argv[1])
