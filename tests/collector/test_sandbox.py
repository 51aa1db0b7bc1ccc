"""Generated code runs in real bubblewrap: each escape of issue 21 fails, verdicts cannot be forged, and
nothing of a run is left afterwards (checked by process group, by PID namespace and by command line)."""

from __future__ import annotations

import os
import resource
import secrets
import socket
import textwrap
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from collector.run import main as run_main
from collector.tasks import load_task
from collector.tasks.base import TaskItem
from collector.tasks.checkers import code_verdict
from collector.tasks.codecheck import CodeVerdict
from collector.tasks.sandbox import (
    DEFAULT_MEMORY_MB,
    FILE_MB,
    MAX_PROCESSES,
    NOBODY,
    processes_left,
    run_job,
    sandbox_description,
    sandbox_problem,
)
from collector.zoo.__main__ import main as zoo_main
from warehouse.errors import UserError

ROOT = Path(__file__).resolve().parents[2]
HOST_PID = os.getpid()
SECRET = secrets.token_hex(16)  # an expected value no program can know
MARK = f"{secrets.randbelow(10**6):06d}"  # in the sleeps the programs leave behind: this session's own
# Each escape is the body of `escaped()`, which answers 'yes' only if every line of it succeeded.
ESCAPE = TaskItem("escape", "p", None, (("tests", "assert escaped() == 'yes'"), ("timeout_s", "3")))
# Forgeries against both ways of deciding: literals compared here, and a check replayed without the program.
FORGE_HERE = TaskItem("forge", "p", None, (("tests", f"assert mystery(3) == {SECRET!r}"),))
FORGE_REPLAYED = TaskItem(
    "forge-replayed",
    "p",
    None,
    (
        ("prefix", "def mystery(x):\n"),
        ("tests", f"def check(candidate):\n    assert candidate(3) == {SECRET!r}\n\ncheck(mystery)\n"),
        ("entry_point", "mystery"),
    ),
)


def escape(attempt: str) -> str:
    body = textwrap.indent(textwrap.dedent(attempt).strip(), "        ")
    head = "import gc, os, signal, socket, sys, time\ndef escaped():\n    try:\n"
    return f"{head}{body}\n    except BaseException:\n        return 'no'\n    return 'yes'\n"


def escapes(outside: Path, port: int) -> dict[str, str]:
    """Every escape the issue observed, aimed at real things of this process and machine."""
    return {
        "pidfd signal to the collector": f"""
            signal.pidfd_send_signal(os.pidfd_open({HOST_PID}), signal.SIGKILL)""",
        "pidfd signal to the parent, then kill the collector": f"""
            signal.pidfd_send_signal(os.pidfd_open(os.getppid()), signal.SIGKILL)
            os.kill({HOST_PID}, signal.SIGKILL)""",
        "create a file outside through dir_fd": f"""
            fd = os.open({str(outside)!r}, os.O_RDONLY)
            os.close(os.open('created.txt', os.O_WRONLY | os.O_CREAT, dir_fd=fd))""",
        "create a file in / through dir_fd": """
            fd = os.open('/', os.O_RDONLY)
            os.close(os.open('created.txt', os.O_WRONLY | os.O_CREAT, dir_fd=fd))""",
        "remove a file outside through dir_fd": f"""
            os.remove('victim.txt', dir_fd=os.open({str(outside)!r}, os.O_RDONLY))""",
        "remove the interpreter through dir_fd": """
            os.remove('python3', dir_fd=os.open('/usr/bin', os.O_RDONLY))""",
        "read /etc/shadow": "open('/etc/shadow').read()",
        "list /root": "os.listdir('/root')",
        "read the project's files": f"open({str(ROOT / 'README.md')!r}).read()",
        "read the warehouse": f"open({str(outside / 'warehouse.duckdb')!r}, 'rb').read()",
        "reach the network": f"""
            socket.create_connection(('127.0.0.1', {port}), timeout=1).sendall(b'out')""",
        "bind beside a real interface": """
            s = socket.socket()
            s.bind(('0.0.0.0', 0))
            assert [name for _, name in socket.if_nameindex() if name != 'lo']""",
        "fork 1,000 processes": f"""
            for _ in range(1000):
                if os.fork() == 0:
                    os.execv('/usr/bin/sleep', ['sleep', '57.{MARK}'])""",
        "leave a daemonised grandchild": f"""
            if os.fork() == 0:
                os.setsid()
                if os.fork() == 0:
                    os.execv('/usr/bin/sleep', ['sleep', '58.{MARK}'])
                os._exit(0)
            os.wait()
            time.sleep(0.2)
            raise RuntimeError('the daemon runs; does it outlive the check?')""",
    }


# The bodies of `mystery(x)`: each tries to pass without knowing the expected value.
FORGERIES = {
    "exit 0 early": "import os\nos._exit(0)",
    "print passed and fake (also deep, huge, unhashable) records on every descriptor": """
        import json, os
        call = '{"kind": "call", "name": "mystery", "key": "", "value": %s}'
        lines = ['{"kind": "ran"}', call % ('[' * 980 + ']' * 980), call % ('9' * 5000),
                 call % '"guess"', '{"kind": "passed"}', '{"kind": "call", "value": {"dict": [[[], 1]]}}']
        for fd in range(0, 64):
            for line in lines:
                try:
                    os.write(fd, (line + "\\n").encode())
                except OSError:
                    pass
        print("passed")
        os._exit(0)""",
    "read the runner's frames, job and memory for the answer": """
        import gc, re, sys
        seen, hexes = [], re.compile(r"'([0-9a-f]{32})'|\\b([0-9a-f]{32})\\b")
        frame = sys._getframe()
        while frame is not None:
            seen += [repr(frame.f_locals), repr(frame.f_globals), repr(frame.f_code.co_consts)]
            frame = frame.f_back
        seen += [repr(o)[:100000] for o in gc.get_objects() if isinstance(o, (dict, list, tuple))]
        try:
            seen.append(open('/run/fsgen/job.json').read())
        except OSError:
            pass
        for text in seen:
            for found in hexes.finditer(text):
                return found.group(1) or found.group(2)
        return 'nothing found'""",
    "switch off the harness through gc, then fork 1,000, bind and signal the collector": f"""
        import gc, os, signal, socket
        for o in gc.get_objects():
            code = getattr(o, '__code__', None)
            if code is not None and code.co_filename != '<program>':
                try:
                    o.__code__ = (lambda *a, **k: None).__code__
                except (AttributeError, TypeError, ValueError):
                    pass
        sleep = lambda: os.execv('/usr/bin/sleep', ['sleep', '59.{MARK}'])
        for attempt in (lambda: socket.socket().bind(('0.0.0.0', 0)),
                        lambda: os.kill({HOST_PID}, signal.SIGKILL),
                        lambda: [os.fork() or sleep() for _ in range(1000)]):
            try:
                attempt()
            except OSError:
                pass
        return 'guess'""",
    "call the harness's own writer and replace its lookup, through gc": """
        import gc, sys, types
        for o in gc.get_objects():
            if isinstance(o, types.FunctionType) and o.__name__ == 'emit':
                for entry in ({"kind": "call", "name": "mystery", "key": "", "value": "guess"},
                              {"kind": "passed"}):
                    o(entry)
        sys.modules['__main__'].__dict__['__fsgen_candidate__'] = lambda name: (lambda *a, **k: 'guess')
        return 'guess'""",
}


def forgery_answers(body: str) -> tuple[str, str]:
    """(whole program that also runs the forgery at import, function body) for the two forgery items."""
    indented = textwrap.indent(textwrap.dedent(body).strip(), "    ")
    return f"def mystery(x):\n{indented}\n\nmystery(0)\n", indented + "\n"


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, socket.socket]]:
    outside = tmp_path_factory.mktemp("outside")
    (outside / "victim.txt").write_text("precious")
    (outside / "warehouse.duckdb").write_bytes(b"DUCK")
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        yield outside, server


@pytest.fixture(scope="module")
def outcomes(host: tuple[Path, socket.socket]) -> dict[str, CodeVerdict]:
    """Every escape and forgery, run in parallel once."""
    outside, server = host
    jobs = {name: (ESCAPE, escape(a)) for name, a in escapes(outside, server.getsockname()[1]).items()}
    for name, body in FORGERIES.items():
        whole, completion = forgery_answers(body)
        jobs[f"forge here: {name}"] = (FORGE_HERE, whole)
        jobs[f"forge replayed: {name}"] = (FORGE_REPLAYED, completion)
    with ThreadPoolExecutor(max_workers=4) as pool:
        verdicts = pool.map(lambda job: code_verdict(*job), jobs.values())
        return dict(zip(jobs, verdicts, strict=True))


def running(marker: str) -> list[int]:
    """Host processes whose command line contains `marker`."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and marker.encode() in (entry / "cmdline").read_bytes():
                found.append(int(entry.name))
        except OSError:
            pass
    return found


def assert_nothing_left(verdict: CodeVerdict) -> None:
    own_namespace = os.readlink("/proc/self/ns/pid")
    for run in verdict.runs:
        assert run.pid_namespace is not None and own_namespace != f"pid:[{run.pid_namespace}]"
        assert run.leftovers == 0, run
        assert processes_left(run.pgid, run.pid_namespace) == []


@pytest.mark.parametrize(
    "name", [*escapes(Path("/x"), 1), *(f"forge {w}: {f}" for w in ("here", "replayed") for f in FORGERIES)]
)
def test_every_escape_and_forgery_fails_and_leaves_nothing(
    outcomes: dict[str, CodeVerdict], name: str
) -> None:
    verdict = outcomes[name]
    assert not verdict.passed, verdict
    assert verdict.reason.startswith(("failed", "timeout", "error")), verdict.reason
    assert_nothing_left(verdict)
    assert all(run.duration_s < 5 for run in verdict.runs)


def test_the_host_is_untouched_after_the_escapes(
    outcomes: dict[str, CodeVerdict], host: tuple[Path, socket.socket]
) -> None:
    outside, server = host
    assert (outside / "victim.txt").read_text() == "precious"
    assert sorted(p.name for p in outside.iterdir()) == ["victim.txt", "warehouse.duckdb"]
    assert [running(f"sleep\x00{second}.{MARK}") for second in (57, 58, 59)] == [[], [], []]
    server.settimeout(0.1)
    with pytest.raises(TimeoutError):
        server.accept()  # nothing connected from inside


def test_the_forgeries_would_pass_if_they_knew_the_answer() -> None:
    """The right value passes both forgery items (so their failures above mean something)."""
    here, completion = forgery_answers(f"return {SECRET!r}")
    assert code_verdict(FORGE_HERE, here).passed
    assert code_verdict(FORGE_REPLAYED, completion).passed


def test_a_benign_program_passes_with_its_scratch_folder_and_threads() -> None:
    program = """
        import os, tempfile, threading
        def add(a, b):
            with open('notes.txt', 'w') as f:
                f.write(str(a + b))
            fd, name = tempfile.mkstemp()
            assert os.path.dirname(name) == os.getcwd() == '/tmp'
            box = []
            t = threading.Thread(target=lambda: box.append(int(open('notes.txt').read())))
            t.start(); t.join()
            return box[0]
    """
    item = TaskItem("add", "p", None, (("tests", "assert add(2, 3) == 5\nassert add(-1, 1) == 0"),))
    verdict = code_verdict(item, textwrap.dedent(program))
    assert verdict.passed, verdict
    assert_nothing_left(verdict)
    wrong = code_verdict(item, "def add(a, b):\n    return a - b\n")
    assert wrong.reason == "failed: assert 1: add returned -1, expected 5"


def test_inside_it_is_nobody_alone_in_an_empty_world() -> None:
    """Namespaces, file system, network, environment, limits: one value, compared outside; the kernel's
    uid of the sandbox's processes is read from the host while one of them runs."""
    program = f"""
        import os, resource, socket, subprocess
        def facts():
            limits = [resource.getrlimit(getattr(resource, 'RLIMIT_' + n)) for n in ('AS', 'FSIZE', 'NPROC')]
            subprocess.run(['sleep', '1.{MARK}'])  # for the host to look at
            return (os.getuid(), os.getgid(), os.getpid() < 10, sorted(os.listdir('/')),
                    [n for _, n in socket.if_nameindex()], socket.gethostname(), os.listdir('/usr/local'),
                    sorted(os.environ), limits)
    """
    links = [
        p.name for p in Path("/").iterdir() if p.name in ("bin", "sbin", "lib", "lib32", "lib64", "libx32")
    ]
    expected = (
        NOBODY, NOBODY, True, sorted([*links, "dev", "proc", "run", "tmp", "usr"]), ["lo"], "sandbox", [],
        ["HOME", "LANG", "PATH", "PWD", "TMPDIR"],
        [(DEFAULT_MEMORY_MB * 2**20,) * 2, (FILE_MB * 2**20,) * 2, (MAX_PROCESSES,) * 2],
    )  # fmt: skip
    item = TaskItem("facts", "p", None, (("tests", f"assert facts() == {expected!r}"),))
    with ThreadPoolExecutor(max_workers=1) as pool:
        pending = pool.submit(code_verdict, item, textwrap.dedent(program))
        deadline = time.monotonic() + 3
        while not (found := running(f"sleep\x001.{MARK}")) and time.monotonic() < deadline:
            time.sleep(0.02)
        uids = {
            line.split()[1]
            for line in Path(f"/proc/{found[0]}/status").read_text().splitlines()
            if line.startswith("Uid:")
        }
        verdict = pending.result()
    assert verdict.passed, verdict.reason
    assert uids == {
        str(NOBODY if os.geteuid() == 0 else os.geteuid())
    }  # not root, even as seen from the host


@pytest.mark.parametrize(
    ("program", "reason"),
    [
        ("def f():\n    while True:\n        pass\n", "timeout: still running after 1 s"),
        ("def f():\n    return bytearray(8 * 1024 ** 3)\n", "failed: assert 1: f raised MemoryError"),
        ("def f(:\n", "failed: the program raised SyntaxError"),
        ("import sys\nsys.exit(0)\n", "failed: the program raised SystemExit"),
        (
            "while True:\n    print('x' * 100000)\n",
            "failed: the program raised OSError ([Errno 27] File too large)",
        ),
    ],
)
def test_hangs_hogs_and_floods_fail_in_bounded_time(program: str, reason: str) -> None:
    item = TaskItem("f", "p", None, (("tests", "assert f() == 1"), ("timeout_s", "1")))
    start = time.monotonic()
    verdict = code_verdict(item, program)
    assert verdict.reason.startswith(reason), verdict.reason
    assert time.monotonic() - start < 4
    assert_nothing_left(verdict)


def test_runs_from_several_threads_at_once_stay_apart() -> None:
    item = TaskItem("f", "p", None, (("tests", "assert f() == 0"),))
    programs = [f"def f():\n    return {i} % 2\n" for i in range(4)]
    with ThreadPoolExecutor(max_workers=4) as pool:
        verdicts = list(pool.map(lambda p: code_verdict(item, p), programs))
    assert [v.passed for v in verdicts] == [True, False, True, False]


def test_the_parent_is_unharmed_and_limits_are_checked() -> None:
    limits_before = resource.getrlimit(resource.RLIMIT_AS), resource.getrlimit(resource.RLIMIT_NPROC)
    run_job({"mode": "record", "program": "import os\nos.chdir('/')\n", "tests": ""}, timeout_s=2)
    assert (
        resource.getrlimit(resource.RLIMIT_AS),
        resource.getrlimit(resource.RLIMIT_NPROC),
    ) == limits_before
    assert "bubblewrap" in sandbox_description()
    with pytest.raises(ValueError, match="timeout_s must be positive"):
        run_job({}, timeout_s=0)
    with pytest.raises(ValueError, match="memory_mb must be at least 64"):
        run_job({}, timeout_s=1, memory_mb=8)


@pytest.fixture
def no_bwrap(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A PATH without bubblewrap (the real lookup, re-run)."""
    monkeypatch.setenv("PATH", str(tmp_path))
    sandbox_problem.cache_clear()
    yield
    sandbox_problem.cache_clear()


@pytest.mark.usefixtures("no_bwrap")
def test_without_bubblewrap_code_tasks_are_refused_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert load_task("builtin:arith", samples=2).items  # other tasks run as before
    with pytest.raises(
        UserError, match=r"^code tasks need bubblewrap \(bwrap\) .*apt-get install bubblewrap$"
    ):
        load_task("builtin:code", samples=2)
    argv = ["--llm", "zoo:zoo-xs", "--slm", "zoo:zoo-xs", "--dataset", "builtin:code", "--samples", "1"]
    start = time.monotonic()
    assert run_main([*argv, "--warehouse", str(tmp_path / "w.duckdb"), "--quiet"]) == 2
    assert time.monotonic() - start < 10  # refused before any model loads
    assert zoo_main(["train", "--out", str(tmp_path / "zoo"), "--scale", "0.01"]) == 2  # before training
    assert not (tmp_path / "zoo").exists()
    said = capsys.readouterr()
    text = " ".join((said.out + said.err).split())
    assert text.count("error: code tasks need bubblewrap (bwrap)") == 2 and "Traceback" not in text
