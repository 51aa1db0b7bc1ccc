"""Run untrusted generated code in a separate, limited Python process.

Layers, each kept where the machine allows it (every machine gets the first four):

1. A child process only (`python -I -S -B`: no site-packages, no environment, no bytecode writes), in
   its own session so the whole process group is killed on timeout and after it ends; a clean
   environment; a fresh scratch folder as cwd, HOME and TMPDIR, removed afterwards.
2. Resource limits the child sets on itself before the program starts: address space (memory), CPU
   seconds, file size, open files, no core files, and, where the child runs as an unprivileged user,
   the process count (RLIMIT_NPROC does not bind root).
3. An audit hook (PEP 578) installed before the program starts: it blocks sockets, process creation
   (fork, exec, spawn, subprocess, `_posixsubprocess`), ctypes, signals to other processes, changing
   limits, and writes, renames and deletes outside the scratch folder. Every blocked attempt fails the
   run, even when the program catches the error.
4. A wall-clock timeout kept by the parent.
5. Where `unshare` works here: a fresh network namespace (no usable interface).
6. Where the parent is root and `nobody` can run the interpreter: the child runs as `nobody`.

The limits are set by the child itself, not in a `preexec_fn`, because `preexec_fn` is unsafe in a
multi-threaded parent (torch starts threads). The child runs this very file as its runner, so this
module imports only modules that the hook does not need to keep out (no subprocess, socket or ctypes
at import time: a module already loaded would slip past the import check).
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import os
import secrets
import select
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

DEFAULT_MEMORY_MB = 512
DEFAULT_FILE_MB = 16
_TAIL_CHARS = 2000
_NOBODY = 65534
_PYTHON_FLAGS = ("-I", "-S", "-B")
_PROBE_ARG = "--probe"


@dataclass(frozen=True)
class CodeResult:
    """Outcome of one sandboxed run."""

    passed: bool
    reason: str
    returncode: int | None = None
    timed_out: bool = False
    stdout: str = ""
    stderr: str = ""
    duration_s: float = 0.0


@dataclass(frozen=True)
class _Launch:
    """How children are started on this machine (found once by probing)."""

    prefix: tuple[str, ...]
    user: int | None


def run_code(program: str, *, timeout_s: float = 3.0, memory_mb: int = DEFAULT_MEMORY_MB) -> CodeResult:
    """Run `program` in a sandboxed child process; passed iff it runs to its end without error."""
    if timeout_s <= 0:
        raise ValueError(f"timeout_s must be positive, got {timeout_s}")
    if memory_mb < 64:
        raise ValueError(f"memory_mb must be at least 64 (the interpreter needs it), got {memory_mb}")
    launch = _launch_mode()
    root = Path(tempfile.mkdtemp(prefix="fsgen-sandbox-"))
    try:
        return _run_in(root, program, timeout_s=timeout_s, memory_mb=memory_mb, launch=launch)
    finally:
        _remove_tree(root)


def _remove_tree(root: Path) -> None:
    """Remove the run's folder, even where the program took away permissions inside its scratch folder."""
    shutil.rmtree(root, ignore_errors=True)
    if root.exists():
        for folder, subfolders, _ in os.walk(root):
            for name in subfolders:
                with contextlib.suppress(OSError):
                    os.chmod(os.path.join(folder, name), 0o700)
        shutil.rmtree(root, ignore_errors=True)


def _run_in(root: Path, program: str, *, timeout_s: float, memory_mb: int, launch: _Launch) -> CodeResult:
    scratch = root / "work"
    scratch.mkdir()
    (root / "program.py").write_text(program, encoding="utf-8")
    if launch.user is not None:
        root.chmod(0o755)
        os.chown(scratch, launch.user, launch.user)
    limits = {
        "memory_bytes": memory_mb * 2**20,
        "cpu_s": math.ceil(timeout_s) + 1,
        "file_bytes": DEFAULT_FILE_MB * 2**20,
        "nproc": 32 if launch.user is not None else None,
    }
    nonce = secrets.token_hex(16)
    with (
        open(root / "result.jsonl", "wb") as result_f,
        open(root / "stdout", "wb") as out_f,
        open(root / "stderr", "wb") as err_f,
    ):
        cmd = [*launch.prefix, sys.executable, *_PYTHON_FLAGS, str(Path(__file__).resolve())]
        cmd += [str(result_f.fileno()), str(root / "program.py"), json.dumps(limits)]
        start = time.monotonic()
        returncode, timed_out = _spawn_and_wait(
            cmd, scratch, (out_f, err_f, result_f), nonce, launch, timeout_s
        )
        duration = time.monotonic() - start
    report = _read_report(root / "result.jsonl", nonce)
    passed, reason = _verdict(report, returncode, timed_out, timeout_s=timeout_s, memory_mb=memory_mb)
    stdout, stderr = _tail(root / "stdout"), _tail(root / "stderr")
    return CodeResult(passed, reason, returncode, timed_out, stdout, stderr, round(duration, 3))


def _spawn_and_wait(
    cmd: list[str],
    scratch: Path,
    files: tuple[BinaryIO, BinaryIO, BinaryIO],
    nonce: str,
    launch: _Launch,
    timeout_s: float,
) -> tuple[int, bool]:
    import subprocess  # lazily: this file is also the child's runner (see the module docstring)

    out_f, err_f, result_f = files
    proc = subprocess.Popen(
        cmd,
        cwd=scratch,
        env=_clean_env(scratch),
        stdin=subprocess.PIPE,
        stdout=out_f,
        stderr=err_f,
        pass_fds=(result_f.fileno(),),
        start_new_session=True,
        **_user_kwargs(launch),
    )
    assert proc.stdin is not None
    try:
        proc.stdin.write((nonce + "\n").encode())
        proc.stdin.close()
    except BrokenPipeError:
        pass  # the child died at start; its exit status says why
    timed_out = not _wait_exited(proc.pid, timeout_s)
    # The leader is not reaped yet (a zombie keeps its group id), so this cannot hit an unrelated group.
    _kill_group(proc.pid)
    return proc.wait(), timed_out


def _user_kwargs(launch: _Launch) -> dict[str, Any]:
    if launch.user is None:
        return {}
    return {"user": launch.user, "group": launch.user, "extra_groups": []}


def _wait_exited(pid: int, timeout_s: float) -> bool:
    """Wait until the child has exited, without reaping it; False on timeout."""
    try:
        pidfd = os.pidfd_open(pid)
    except (AttributeError, OSError):
        pidfd = None
    if pidfd is not None:
        try:
            ready, _, _ = select.select([pidfd], [], [], timeout_s)
            return bool(ready)
        finally:
            os.close(pidfd)
    deadline, pause = time.monotonic() + timeout_s, 0.001
    while time.monotonic() < deadline:
        if os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None:
            return True
        time.sleep(pause)
        pause = min(pause * 2, 0.02)
    return False


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def _clean_env(scratch: Path) -> dict[str, str]:
    home = str(scratch)
    return {"PATH": "/usr/bin:/bin", "HOME": home, "TMPDIR": home, "LANG": "C.UTF-8", "OMP_NUM_THREADS": "1"}


def _read_report(path: Path, nonce: str) -> dict[str, Any]:
    """Merge the runner's JSON lines that carry the nonce: violations (in order) and the final status."""
    report: dict[str, Any] = {}
    violations: list[str] = []
    for line in path.read_bytes().decode("utf-8", "replace").splitlines():
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            continue
        if not isinstance(entry, dict) or entry.get("nonce") != nonce:
            continue
        if "violation" in entry:
            violations.append(str(entry["violation"]))
        elif "status" in entry:
            report.update(entry)
    report["violations"] = violations
    return report


def _verdict(
    report: dict[str, Any], returncode: int, timed_out: bool, *, timeout_s: float, memory_mb: int
) -> tuple[bool, str]:
    if report["violations"]:
        return False, f"blocked: {report['violations'][0]}"
    if timed_out:
        return (
            False,
            f"timeout: still running after {timeout_s:g} s (wall clock); process group killed",
        )
    status, error = report.get("status"), str(report.get("error", ""))
    if status == "ok" and returncode == 0:
        return True, "passed"
    if status == "error" and report.get("error_type") == "MemoryError":
        return False, f"memory limit: the program needed more than {memory_mb} MB ({error})"
    if status == "error":
        return False, f"failed: {error}"
    if status == "exit":
        return False, f"exited early: {error} before the program's end"
    if returncode in (-signal.SIGXCPU, -signal.SIGKILL):
        return False, f"cpu limit: killed by the kernel (signal {-returncode}) at its CPU-time limit"
    if returncode < 0:
        return False, f"killed by signal {signal.Signals(-returncode).name}"
    return False, f"exited early with code {returncode} before the program's end (e.g. os._exit)"


def _tail(path: Path) -> str:
    return path.read_bytes()[-_TAIL_CHARS:].decode("utf-8", "replace")


@functools.cache
def _launch_mode() -> _Launch:
    """Strongest way of starting a child that works here: network namespace and/or user `nobody`."""
    is_root = os.geteuid() == 0
    unshare = shutil.which("unshare")
    candidates: list[_Launch] = []
    for user in (_NOBODY, None) if is_root else (None,):
        if unshare:
            flags = ("--net",) if is_root and user is None else ("--user", "--net")
            candidates.append(_Launch((unshare, *flags, "--"), user))
        candidates.append(_Launch((), user))
    return next((c for c in candidates if _probe(c)), _Launch((), None))


def _probe(launch: _Launch) -> bool:
    """Whether a child started this way can run this very runner file."""
    import subprocess  # lazily: see the module docstring

    try:
        done = subprocess.run(
            [*launch.prefix, sys.executable, *_PYTHON_FLAGS, str(Path(__file__).resolve()), _PROBE_ARG],
            cwd="/",
            env={"PATH": "/usr/bin:/bin"},
            capture_output=True,
            timeout=10,
            **_user_kwargs(launch),
        )
    except (OSError, subprocess.SubprocessError):
        return False
    return done.returncode == 0 and done.stdout.strip() == b"ok"


def sandbox_description() -> str:
    """One line naming the isolation layers active on this machine."""
    launch = _launch_mode()
    parts = ["child process", "rlimits", "audit hook", "wall timeout", "process-group kill"]
    if launch.prefix:
        parts.append("network namespace")
    if launch.user is not None:
        parts.append(f"runs as uid {launch.user}")
    return ", ".join(parts)


# ---------------------------------------------------------------------------------------------------
# The child side: `python -I -S -B sandbox.py RESULT_FD PROGRAM LIMITS_JSON`, nonce on stdin.
# ---------------------------------------------------------------------------------------------------


class SandboxViolation(PermissionError):
    """Raised inside the child when the program tries something the sandbox forbids."""


_PROCESS_EVENTS = {
    "os.fork": "process creation (os.fork)",
    "os.forkpty": "process creation (os.forkpty)",
    "os.system": "process creation (os.system)",
    "os.exec": "process creation (os.exec*)",
    "os.posix_spawn": "process creation (os.posix_spawn)",
    "os.spawn": "process creation (os.spawn*)",
    "subprocess.Popen": "process creation (subprocess)",
    "pty.spawn": "process creation (pty.spawn)",
    "resource.setrlimit": "changing resource limits",
    "resource.prlimit": "changing resource limits",
    "ctypes.dlopen": "ctypes",
    "ctypes.dlsym": "ctypes",
    "ctypes.call_function": "ctypes",
    "webbrowser.open": "opening a browser",
}
_BLOCKED_IMPORTS = {"_posixsubprocess": "process creation (_posixsubprocess)", "_ctypes": "ctypes"}
# Events that change the file system, and which of their arguments name a path.
_PATH_EVENTS = {
    "os.remove": (0,),
    "os.rmdir": (0,),
    "os.mkdir": (0,),
    "os.rename": (0, 1),
    "os.link": (1,),
    "os.symlink": (1,),
    "os.chmod": (0,),
    "os.chown": (0,),
    "os.truncate": (0,),
    "os.utime": (0,),
    "os.setxattr": (0,),
    "os.removexattr": (0,),
    "shutil.rmtree": (0,),
}
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_TRUNC
_WRITABLE_OUTSIDE = ("/dev/null",)


def _child_main(argv: list[str]) -> None:
    nonce = sys.stdin.readline().strip()
    result_fd, program_path, limits = int(argv[0]), argv[1], json.loads(argv[2])

    def emit(entry: dict[str, Any]) -> None:
        os.write(result_fd, (json.dumps({"nonce": nonce, **entry}) + "\n").encode())

    _set_limits(limits)
    for name in _BLOCKED_IMPORTS:
        sys.modules.pop(name, None)  # so that importing it again raises the audited import event
    scratch = os.path.realpath(os.getcwd())
    sys.addaudithook(_make_hook(scratch, emit))
    emit(_run_program(program_path))
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)  # skip joining threads the program left running


def _set_limits(limits: dict[str, Any]) -> None:
    import resource

    def cap(kind: int, value: int) -> None:
        resource.setrlimit(kind, (value, value))

    cap(resource.RLIMIT_AS, limits["memory_bytes"])
    resource.setrlimit(resource.RLIMIT_CPU, (limits["cpu_s"], limits["cpu_s"] + 1))
    cap(resource.RLIMIT_FSIZE, limits["file_bytes"])
    cap(resource.RLIMIT_CORE, 0)
    cap(resource.RLIMIT_NOFILE, 256)
    if limits["nproc"] is not None:
        cap(resource.RLIMIT_NPROC, limits["nproc"])


def _make_hook(
    scratch: str, emit: Callable[[dict[str, Any]], None]
) -> Callable[[str, tuple[Any, ...]], None]:
    own_pid = os.getpid()

    def block(what: str) -> None:
        emit({"violation": what})
        raise SandboxViolation(f"sandbox: {what} is not allowed")

    def hook(event: str, args: tuple[Any, ...]) -> None:
        if event == "open":
            if isinstance(args[0], (str, bytes, os.PathLike)) and _writes(args):
                path = _resolve(args[0], follow=True)
                if not _inside(path, scratch):
                    block(f"writing outside the scratch folder ({path})")
        elif event in _PATH_EVENTS:
            for i in _PATH_EVENTS[event]:
                if i < len(args) and isinstance(args[i], (str, bytes, os.PathLike)):
                    path = _resolve(args[i], follow=False)
                    if not _inside(path, scratch):
                        block(f"changing files outside the scratch folder ({event} {path})")
        elif event.startswith("socket."):
            block(f"network access ({event})")
        elif event in _PROCESS_EVENTS:
            block(_PROCESS_EVENTS[event])
        elif event == "import" and args[0] in _BLOCKED_IMPORTS:
            block(_BLOCKED_IMPORTS[args[0]])
        elif event in ("os.kill", "os.killpg") and args[0] != own_pid:
            block(f"signalling other processes ({event})")

    return hook


def _writes(open_args: tuple[Any, ...]) -> bool:
    """Whether an 'open' event (path, mode, flags) opens for writing."""
    mode, flags = (list(open_args[1:3]) + [None, None])[:2]
    if isinstance(flags, int) and flags & _WRITE_FLAGS:
        return True
    return isinstance(mode, str) and any(c in mode for c in "wax+")


def _resolve(path: str | bytes | os.PathLike[str], *, follow: bool) -> str:
    text = os.fsdecode(path)
    if follow:
        return os.path.realpath(text)
    absolute = os.path.abspath(text)
    return os.path.join(os.path.realpath(os.path.dirname(absolute)), os.path.basename(absolute))


def _inside(path: str, scratch: str) -> bool:
    return path == scratch or path.startswith(scratch + os.sep) or path in _WRITABLE_OUTSIDE


def _run_program(program_path: str) -> dict[str, Any]:
    """Execute the program as `__main__`; describe how it ended."""
    import traceback
    import types

    with open(program_path, encoding="utf-8") as f:
        source = f.read()
    module = types.ModuleType("__main__")
    sys.modules["__main__"] = module
    sys.argv = [program_path]
    try:
        exec(compile(source, "<program>", "exec"), module.__dict__)
    except SystemExit as exc:
        return {"status": "exit", "error": f"the program called sys.exit({exc.code!r})"}
    except BaseException as exc:  # the program's own error, reported to the parent
        traceback.print_exc(limit=-5)
        return {"status": "error", "error_type": type(exc).__name__, "error": _describe(exc, source)}
    return {"status": "ok"}


def _describe(exc: BaseException, source: str) -> str:
    import traceback

    where = ""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename == "<program>"]
    if isinstance(exc, SyntaxError) and exc.lineno:
        frames, where = [], f" at line {exc.lineno}"
    if frames and frames[-1].lineno:
        lines = source.splitlines()
        line = lines[frames[-1].lineno - 1].strip() if frames[-1].lineno <= len(lines) else ""
        where = f" at line {frames[-1].lineno}: {line[:200]}"
    message = str(exc)[:300]
    return f"{type(exc).__name__}{where}" + (f" ({message})" if message else "")


if __name__ == "__main__":
    if sys.argv[1:] == [_PROBE_ARG]:
        print("ok")
    else:
        _child_main(sys.argv[1:])
