"""Run the code-check harness in Debian's bubblewrap: a throw-away container with nothing of ours in it.

What one run gets (`bwrap`, started as uid 65534 when we are root, so that the kernel counts its
processes against an unprivileged user):
- new user, PID, mount, IPC, UTS, cgroup and network namespaces; uid and gid 65534 inside; no further
  user namespaces; `--die-with-parent`; `--new-session` (no terminal to inject keystrokes into);
- a file system made of a read-only bind of `/usr` (with `/usr/local` hidden) and the `/bin`, `/lib*`
  links, a new `/proc` of its own PID namespace, a minimal `/dev`, and small size-capped tmpfs folders
  (`/tmp`, the scratch folder and cwd; `/dev/shm`); everything else read-only and empty: no `/etc`,
  no `/root`, no `/home`, no warehouse, no project tree;
- the system interpreter `/usr/bin/python3 -I -S -B` (not our virtualenv), running the trusted harness
  and its job, both copied in from memory files; the harness sets the rlimits (address space, CPU
  seconds, file size, processes, open files, core files) before any generated code runs;
- a clean environment; bwrap closes every descriptor but 0-2 before the harness starts, so the sandbox
  holds nothing of ours: the harness writes its JSON records to stdout and moves the program's own
  output to stderr, both memory files read here afterwards.

The wall-clock limit is kept here: at the limit (or when the run ends) the process group of `bwrap` is
killed; the kernel then kills everything left in the sandbox's PID namespace (its init dies), and this
module checks, by process group and by PID namespace, that nothing is left and kills what is.

Where bubblewrap is missing or cannot create namespaces, `sandbox_problem()` says so in one line and
`require_sandbox()` raises it as a user error: code tasks are refused before any model loads.
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from warehouse.errors import UserError

PYTHON = "/usr/bin/python3"
NOBODY = 65534
DEFAULT_MEMORY_MB = 512
FILE_MB = 16
TMPFS_MB = 32
MAX_PROCESSES = 16  # threads count too; with RLIMIT_AS per process, bounds the memory a run can hold
_TAIL_CHARS = 2000
MAX_NESTING = 160  # a record's JSON nesting; the harness encodes values at most 64 containers deep
_HARNESS = Path(__file__).with_name("harness.py")
_INSIDE = "/run/fsgen"
_SCRATCH = "/tmp"
INSTALL_HINT = "apt-get install bubblewrap"


@dataclass(frozen=True)
class SandboxRun:
    """What came out of one sandboxed run: exit status, the harness's records, output tails, cleanup."""

    returncode: int
    timed_out: bool
    records: tuple[dict[str, Any], ...]
    output: str  # the tail of what the program printed (stdout and stderr)
    duration_s: float
    pgid: int  # the process group of `bwrap` (host PID numbers)
    pid_namespace: int | None  # the inode of the sandbox's PID namespace, from bwrap's status
    leftovers: int  # processes found still running after the run (and then killed); 0 expected


def run_job(job: Mapping[str, object], *, timeout_s: float, memory_mb: int = DEFAULT_MEMORY_MB) -> SandboxRun:
    """Run the harness on `job` in a fresh sandbox; kill everything at `timeout_s` of wall clock."""
    if timeout_s <= 0:
        raise ValueError(f"timeout_s must be positive, got {timeout_s}")
    if memory_mb < 64:
        raise ValueError(f"memory_mb must be at least 64 (the interpreter needs it), got {memory_mb}")
    require_sandbox()
    limits = {
        "memory_bytes": memory_mb * 2**20,
        "cpu_s": math.ceil(timeout_s) + 1,
        "file_bytes": FILE_MB * 2**20,
        "nproc": MAX_PROCESSES,
    }
    files = _Files.open(_HARNESS.read_bytes(), json.dumps({**job, "limits": limits}).encode())
    try:
        return _run(files, timeout_s)
    finally:
        files.close()


@dataclass(frozen=True)
class _Files:
    """Memory files handed to bwrap: two inputs it copies in, its status, and the two output streams."""

    harness: int
    job: int
    status: int
    stdout: int
    stderr: int

    @classmethod
    def open(cls, harness: bytes, job: bytes) -> _Files:
        def memfd(name: str, data: bytes = b"") -> int:
            fd = os.memfd_create(f"fsgen-{name}", os.MFD_CLOEXEC)
            os.write(fd, data)
            os.lseek(fd, 0, os.SEEK_SET)
            return fd

        return cls(
            memfd("harness", harness), memfd("job", job), memfd("status"), memfd("stdout"), memfd("stderr")
        )  # fmt: skip

    def read(self, fd: int) -> bytes:
        os.lseek(fd, 0, os.SEEK_SET)
        chunks = []
        while chunk := os.read(fd, 1 << 20):
            chunks.append(chunk)
        return b"".join(chunks)

    def close(self) -> None:
        for fd in (self.harness, self.job, self.status, self.stdout, self.stderr):
            with contextlib.suppress(OSError):
                os.close(fd)


def _bwrap_argv(files: _Files) -> list[str]:
    argv = ["bwrap", "--unshare-all", "--unshare-user", "--disable-userns", "--uid", str(NOBODY)]
    argv += ["--gid", str(NOBODY), "--hostname", "sandbox", "--die-with-parent", "--new-session"]
    argv += ["--clearenv", "--setenv", "PATH", "/usr/bin:/bin", "--setenv", "HOME", _SCRATCH]
    argv += ["--setenv", "TMPDIR", _SCRATCH, "--setenv", "LANG", "C.UTF-8"]
    argv += ["--ro-bind", "/usr", "/usr", "--tmpfs", "/usr/local"]
    argv += _root_links()
    argv += ["--proc", "/proc", "--dev", "/dev"]
    size = str(TMPFS_MB * 2**20)
    argv += ["--size", size, "--tmpfs", "/dev/shm", "--size", size, "--tmpfs", _SCRATCH]
    argv += ["--ro-bind-data", str(files.harness), f"{_INSIDE}/harness.py"]
    argv += ["--ro-bind-data", str(files.job), f"{_INSIDE}/job.json"]
    argv += ["--remount-ro", "/dev", "--remount-ro", "/", "--chdir", _SCRATCH]
    argv += ["--json-status-fd", str(files.status)]
    return [*argv, PYTHON, "-I", "-S", "-B", f"{_INSIDE}/harness.py", f"{_INSIDE}/job.json"]


@functools.cache
def _root_links() -> list[str]:
    """The host's /bin, /lib, /lib64... as the same links into /usr (merged /usr), or read-only binds."""
    argv: list[str] = []
    for name in ("bin", "sbin", "lib", "lib32", "lib64", "libx32"):
        path = Path("/") / name
        if path.is_symlink():
            argv += ["--symlink", os.readlink(path), str(path)]
        elif path.is_dir():
            argv += ["--ro-bind", str(path), str(path)]
    return argv


def _run(files: _Files, timeout_s: float) -> SandboxRun:
    fds = (files.harness, files.job, files.status)
    # As root, bwrap itself runs as nobody: the kernel then counts the sandbox's processes against an
    # unprivileged user (RLIMIT_NPROC does not bind uid 0), and nothing in it maps to root.
    as_nobody: dict[str, Any] = {"user": NOBODY, "group": NOBODY, "extra_groups": []}
    start = time.monotonic()
    proc = subprocess.Popen(
        _bwrap_argv(files),
        stdin=subprocess.DEVNULL,
        stdout=files.stdout,
        stderr=files.stderr,
        pass_fds=fds,
        start_new_session=True,  # bwrap leads its own process group: one killpg reaches it
        env={"PATH": "/usr/bin:/bin"},
        cwd="/",
        **(as_nobody if os.geteuid() == 0 else {}),
    )
    timed_out = not _wait_exited(proc.pid, timeout_s)
    # The leader is not reaped yet (a zombie keeps its group id), so this cannot hit an unrelated group.
    _kill_group(proc.pid)
    returncode = proc.wait()
    duration = time.monotonic() - start
    status = _status(files.read(files.status))
    namespace = status.get("pid-namespace")
    leftovers = _sweep(proc.pid, namespace if isinstance(namespace, int) else None)
    return SandboxRun(
        returncode=returncode,
        timed_out=timed_out,
        records=_records(files.read(files.stdout)),
        output=files.read(files.stderr)[-_TAIL_CHARS:].decode("utf-8", "replace"),
        duration_s=round(duration, 3),
        pgid=proc.pid,
        pid_namespace=namespace if isinstance(namespace, int) else None,
        leftovers=leftovers,
    )


def _wait_exited(pid: int, timeout_s: float) -> bool:
    """Wait until the child has exited, without reaping it; False on timeout."""
    import select

    pidfd = os.pidfd_open(pid)
    try:
        ready, _, _ = select.select([pidfd], [], [], timeout_s)
        return bool(ready)
    finally:
        os.close(pidfd)


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def _status(raw: bytes) -> dict[str, object]:
    """bwrap's JSON status documents (one per line), merged."""
    merged: dict[str, object] = {}
    for line in raw.decode("utf-8", "replace").splitlines():
        with contextlib.suppress(json.JSONDecodeError, TypeError, ValueError):
            merged.update(json.loads(line))
    return merged


def _records(raw: bytes) -> tuple[dict[str, Any], ...]:
    """The harness's JSON lines; malformed or absurdly nested ones skipped (the stream is written inside)."""
    found = []
    for line in raw.decode("utf-8", "replace").splitlines():
        with contextlib.suppress(ValueError, RecursionError):  # ValueError: also an int over 4,300 digits
            entry = json.loads(line)
            if isinstance(entry, dict) and _nesting(entry) <= MAX_NESTING:
                found.append(entry)
    return tuple(found)


def _nesting(value: object) -> int:
    """How deeply lists and dicts nest in `value` (without recursion: the value comes from inside)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (list, dict)):
            deepest = max(deepest, depth)
            stack.extend((child, depth + 1) for child in (item.values() if isinstance(item, dict) else item))
    return deepest


def processes_left(pgid: int, pid_namespace: int | None) -> list[int]:
    """Live (non-zombie) processes in process group `pgid` or in PID namespace `pid_namespace`."""
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
            state, _, group = stat.rsplit(")", 1)[1].split()[:3]
            ns = os.readlink(f"{entry.path}/ns/pid") if pid_namespace is not None else ""
        except OSError:
            continue  # gone meanwhile
        in_ns = pid_namespace is not None and ns == f"pid:[{pid_namespace}]"
        if state != "Z" and (int(group) == pgid or in_ns):
            found.append(int(entry.name))
    return found


def _sweep(pgid: int, pid_namespace: int | None, grace_s: float = 2.0) -> int:
    """Make sure nothing of the run is left; kill and count what is (the kernel should have done it)."""
    deadline = time.monotonic() + grace_s
    while (left := processes_left(pgid, pid_namespace)) and time.monotonic() < deadline:
        time.sleep(0.01)  # the namespace's init is still taking its children down
    for pid in left:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    return len(left)


@functools.cache
def sandbox_problem() -> str | None:
    """None where bubblewrap runs here; else one line saying what is wrong and what to install or allow."""
    if shutil.which("bwrap") is None:
        return f"code tasks need bubblewrap (bwrap) to run generated code: {INSTALL_HINT}"
    if not os.access(PYTHON, os.X_OK):
        return f"code tasks run generated code with {PYTHON}, which is missing: apt-get install python3"
    files = _Files.open(b'print(\'{"kind": "ok"}\')\n', b"{}")
    try:
        done = _run(files, 10.0)
    finally:
        files.close()
    if done.returncode == 0 and done.records == ({"kind": "ok"},):
        return None
    said = (done.output.strip().splitlines() or [f"exit status {done.returncode}"])[-1]
    return (
        f"bubblewrap cannot start a sandbox here ({said}); code tasks need unprivileged user namespaces "
        "(e.g. sysctl kernel.unprivileged_userns_clone=1) or a machine that allows them"
    )


def require_sandbox() -> None:
    """Raise the user error of `sandbox_problem()`, if any."""
    problem = sandbox_problem()
    if problem is not None:
        raise UserError(problem)


def sandbox_description() -> str:
    """One line naming the isolation in force."""
    version = subprocess.run(["bwrap", "--version"], capture_output=True, text=True, check=False).stdout
    return (
        f"{version.strip() or 'bubblewrap'}: uid {NOBODY}, new user/pid/mount/ipc/uts/net namespaces, "
        f"read-only /usr, tmpfs scratch, rlimits, wall timeout, {PYTHON} -I -S inside"
    )
