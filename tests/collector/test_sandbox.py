"""The sandbox runs real child processes: hostile programs fail with a clear reason, the parent unharmed."""

from __future__ import annotations

import os
import resource
import socket
import textwrap
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from collector.tasks.sandbox import CodeResult, run_code, sandbox_description


def run(program: str, **kwargs: float) -> CodeResult:
    """Run a dedented program in the sandbox."""
    return run_code(textwrap.dedent(program), **kwargs)  # type: ignore[arg-type]


def test_a_clean_program_passes_and_its_output_comes_back() -> None:
    result = run("""
        def add(a, b):
            return a + b
        assert add(2, 3) == 5
        print("all good")
    """)
    assert result.passed, result
    assert result.reason == "passed"
    assert result.returncode == 0
    assert "all good" in result.stdout


def test_a_failing_assert_fails_and_names_the_line() -> None:
    result = run("""
        def add(a, b):
            return a - b
        assert add(2, 3) == 5
    """)
    assert not result.passed
    assert result.reason.startswith("failed: AssertionError at line 4")
    assert "assert add(2, 3) == 5" in result.reason
    assert "AssertionError" in result.stderr


def test_syntax_errors_and_exceptions_fail() -> None:
    assert run("def f(:\n    pass\n").reason.startswith("failed: SyntaxError")
    assert run("{}['missing']\n").reason.startswith("failed: KeyError at line 1")


def test_an_infinite_loop_is_killed_at_the_wall_timeout() -> None:
    start = time.monotonic()
    result = run("while True:\n    pass\n", timeout_s=1.0)
    assert not result.passed and result.timed_out
    assert result.reason.startswith("timeout: still running after 1 s")
    assert time.monotonic() - start < 3.0


def test_a_timed_out_program_leaves_no_process_behind() -> None:
    result = run(
        """
        import os, sys, time
        print(os.getpid(), flush=True)
        time.sleep(60)
    """,
        timeout_s=1.0,
    )
    assert result.timed_out
    pid = int(result.stdout.split()[0])
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_a_fork_bomb_is_refused() -> None:
    result = run(
        """
        import os
        while True:
            os.fork()
    """,
        timeout_s=2.0,
    )
    assert not result.passed
    assert result.reason == "blocked: process creation (os.fork)"


@pytest.mark.parametrize(
    "program",
    [
        "import subprocess\nsubprocess.run(['true'])\n",
        "import _posixsubprocess\n",
        "import os\nos.system('true')\n",
        "import os\nos.execv('/bin/true', ['true'])\n",
        "import multiprocessing\nmultiprocessing.Process(target=print).start()\n",
    ],
)
def test_every_way_of_starting_a_process_is_refused(program: str) -> None:
    result = run(program)
    assert not result.passed
    assert result.reason.startswith("blocked: process creation"), result.reason


def test_a_memory_hog_hits_the_memory_limit() -> None:
    result = run(
        """
        hog = []
        while True:
            hog.append(bytearray(16 * 1024 * 1024))
    """,
        memory_mb=128,
        timeout_s=3.0,
    )
    assert not result.passed
    assert result.reason.startswith("memory limit: the program needed more than 128 MB"), result.reason


def test_one_huge_allocation_hits_the_memory_limit() -> None:
    result = run("big = bytearray(8 * 1024 ** 3)\n")
    assert result.reason.startswith("memory limit"), result.reason


def test_the_limits_are_in_force_inside_the_child() -> None:
    result = run(
        """
        import resource
        assert resource.getrlimit(resource.RLIMIT_AS)[0] == 256 * 1024 * 1024
        assert resource.getrlimit(resource.RLIMIT_CPU)[0] == 3
        assert resource.getrlimit(resource.RLIMIT_CORE) == (0, 0)
    """,
        memory_mb=256,
        timeout_s=2.0,
    )
    assert result.passed, result


def test_raising_the_limits_is_refused() -> None:
    result = run("""
        import resource
        resource.setrlimit(resource.RLIMIT_AS, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
    """)
    assert result.reason == "blocked: changing resource limits"


def test_a_write_outside_the_scratch_folder_is_refused(tmp_path: Path) -> None:
    target = tmp_path / "escaped.txt"
    result = run(f"open({str(target)!r}, 'w').write('pwned')\n")
    assert not result.passed
    assert result.reason == f"blocked: writing outside the scratch folder ({target})"
    assert not target.exists()


@pytest.mark.parametrize(
    "program",
    [
        "import os\nos.open({path!r}, os.O_WRONLY | os.O_CREAT)\n",
        "import pathlib\npathlib.Path({path!r}).write_text('x')\n",
        "open('../escaped.txt', 'w')\n",
        "import os\nos.chdir('/')\nopen({path!r}[1:], 'a')\n",
        "import os\nos.symlink({path!r}, 'link')\nopen('link', 'w')\n",
        "try:\n    open({path!r}, 'w')\nexcept PermissionError:\n    pass\n",
    ],
)
def test_writes_outside_by_any_route_are_refused(tmp_path: Path, program: str) -> None:
    target = tmp_path / "escaped.txt"
    result = run(program.format(path=str(target)))
    assert not result.passed
    assert result.reason.startswith("blocked:"), result.reason
    assert not target.exists()


def test_deleting_or_renaming_files_outside_is_refused(tmp_path: Path) -> None:
    victim = tmp_path / "keep.txt"
    victim.write_text("precious")
    for program in (
        f"import os\nos.remove({str(victim)!r})\n",
        f"import os\nos.rename({str(victim)!r}, 'x')\n",
    ):
        result = run(program)
        assert result.reason.startswith("blocked: changing files outside the scratch folder"), result.reason
    assert victim.read_text() == "precious"


def test_the_scratch_folder_is_fresh_private_and_removed() -> None:
    result = run("""
        import os, tempfile
        assert os.listdir('.') == []
        with open('notes.txt', 'w') as f:
            f.write('scratch is writable')
        os.mkdir('sub')
        fd, name = tempfile.mkstemp()
        assert os.path.dirname(name) == os.getcwd()
        print(os.getcwd())
    """)
    assert result.passed, result
    assert not Path(result.stdout.strip()).exists()


def test_a_socket_connection_is_refused() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        result = run(f"""
            import socket
            socket.create_connection(("127.0.0.1", {port}), timeout=1).sendall(b"hello")
        """)
        assert not result.passed
        assert result.reason.startswith("blocked: network access (socket."), result.reason
        server.settimeout(0.2)
        with pytest.raises(TimeoutError):
            server.accept()


def test_a_caught_network_error_still_fails_the_run() -> None:
    result = run("""
        import socket
        try:
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        except OSError:
            pass
    """)
    assert result.reason == "blocked: network access (socket.__new__)"


def test_the_environment_is_clean(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FSGEN_SANDBOX_SECRET", "do-not-leak")
    result = run("""
        import os
        assert "FSGEN_SANDBOX_SECRET" not in os.environ
        assert sorted(os.environ) == ["HOME", "LANG", "OMP_NUM_THREADS", "PATH", "TMPDIR"], sorted(os.environ)
    """)
    assert result.passed, result


def test_signalling_the_parent_is_refused() -> None:
    result = run("import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\n")
    assert result.reason == "blocked: signalling other processes (os.kill)"


def test_ctypes_is_refused() -> None:
    assert run("import ctypes\n").reason == "blocked: ctypes"


def test_leaving_early_does_not_count_as_passing() -> None:
    exited = run("import sys\nsys.exit(0)\nassert False\n")
    assert not exited.passed and exited.reason.startswith("exited early: the program called sys.exit(0)")
    killed = run("import os\nos._exit(0)\nassert False\n")
    assert not killed.passed and killed.reason.startswith("exited early with code 0")


def test_faking_the_runners_report_does_not_pass() -> None:
    result = run("""
        import json, os
        for fd in range(3, 16):
            try:
                os.write(fd, (json.dumps({"nonce": "guess", "status": "ok"}) + "\\n").encode())
            except OSError:
                pass
        os._exit(0)
    """)
    assert not result.passed


def test_runs_from_several_threads_at_once_stay_apart() -> None:
    programs = [f"assert {i} % 2 == 0\n" for i in range(4)]
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(run_code, programs))
    assert [r.passed for r in results] == [True, False, True, False]


def test_the_parent_is_unharmed() -> None:
    limits_before = resource.getrlimit(resource.RLIMIT_AS), resource.getrlimit(resource.RLIMIT_CPU)
    cwd_before = os.getcwd()
    run("hog = bytearray(8 * 1024 ** 3)\n")
    run("import os\nos.chdir('/')\n")
    assert (resource.getrlimit(resource.RLIMIT_AS), resource.getrlimit(resource.RLIMIT_CPU)) == limits_before
    assert os.getcwd() == cwd_before
    assert "audit hook" in sandbox_description()


def test_bad_limits_are_refused() -> None:
    with pytest.raises(ValueError, match="timeout_s must be positive"):
        run_code("pass", timeout_s=0)
    with pytest.raises(ValueError, match="memory_mb must be at least 64"):
        run_code("pass", memory_mb=8)
