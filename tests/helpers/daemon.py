"""Run the real `conduitd` command as a separate process, as an operator would."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml


def write_config(path: Path, config: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def conduitd(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run `python -m conduitd ARGS` to completion and return the result (text output)."""
    return subprocess.run([sys.executable, "-m", "conduitd", *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})}, check=False)


def start_conduitd(*args: str, log: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """Start `python -m conduitd ARGS` in the background, its output appended to `log`."""
    with log.open("ab") as handle:  # the child keeps its own copy of the descriptor
        return subprocess.Popen([sys.executable, "-m", "conduitd", *args], stdout=handle, stderr=subprocess.STDOUT,
                                env={**os.environ, **(env or {})})


def start_daemon(config: Path, log: Path) -> subprocess.Popen[bytes]:
    """`python -m conduitd run -c CONFIG`: a daemon (no --once), its output appended to `log`."""
    return start_conduitd("run", "-c", str(config), log=log)


def stop_daemon(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL (if still running) and reap: for `finally`."""
    if proc.poll() is None:
        proc.kill()
    proc.wait(timeout=30)


def tail(log: Path, lines: int = 40) -> str:
    """The last lines of a daemon's log, for a failure message."""
    text = log.read_text(errors="replace") if log.exists() else "(no log)"
    return f"--- {log.name}:\n" + "\n".join(text.splitlines()[-lines:])


def messages(log: Path) -> list[str]:
    """The `message` of every JSON log line (other lines, such as a final error, as they are)."""
    out = []
    for line in log.read_text(errors="replace").splitlines():
        try:
            out.append(str(json.loads(line)["message"]))
        except (ValueError, KeyError, TypeError):
            out.append(line)
    return out
