"""`conduitd.cli.leave`: the process ends with the command's code, its atexit handlers run and its
output flushed, without the interpreter's teardown; a thread still running or a profiler gets
Python's own exit."""

from __future__ import annotations

import pstats
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from conduitd.cli import leave

_PROGRAM = textwrap.dedent("""
    import atexit, sys
    from conduitd.cli import leave

    class Teardown:
        def __del__(self):
            print("teardown ran", file=sys.stderr)

    KEPT = Teardown()  # freed only by the interpreter's teardown
    atexit.register(lambda: print("atexit ran"))
    print("x" * 100_000, end="")  # more than a pipe buffer: must be flushed, not lost
    print("partial line without newline", file=sys.stderr, end="")
    leave(3)
""")


def test_leave_runs_atexit_flushes_and_skips_teardown() -> None:
    done = subprocess.run([sys.executable, "-c", _PROGRAM], capture_output=True, text=True, timeout=60)
    assert done.returncode == 3
    assert done.stdout == "x" * 100_000 + "atexit ran\n"
    assert done.stderr == "partial line without newline"  # and no "teardown ran": it was skipped


def test_a_running_thread_gets_the_normal_exit() -> None:
    release = threading.Event()
    worker = threading.Thread(target=release.wait, name="still running")
    worker.start()
    try:
        with pytest.raises(SystemExit) as exited:
            leave(5)
        assert exited.value.code == 5
    finally:
        release.set()
        worker.join()


def test_a_profiler_gets_the_normal_exit_and_writes_its_results(tmp_path: Path) -> None:
    out = tmp_path / "run.pstats"
    done = subprocess.run([sys.executable, "-m", "cProfile", "-o", str(out), "-m", "conduitd", "--once", "-c",
                           "/nonexistent/conduitd.yaml"], capture_output=True, text=True, timeout=60)
    assert "cannot read config file" in done.stderr  # (cProfile's own exit code is 0 after a SystemExit)
    assert pstats.Stats(str(out)).total_calls > 0


def test_python_m_conduitd_uses_it() -> None:
    done = subprocess.run([sys.executable, "-m", "conduitd", "--once", "-c", "/nonexistent/conduitd.yaml"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "cannot read config file" in done.stderr
