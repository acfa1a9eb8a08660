"""A bounded run on this machine: `conduitd --once -c FILE -p NAME` as a subprocess, its output
logged line by line, its summary read back from the run manifest (`service.manifest_path`)."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
from collections import deque
from collections.abc import Mapping, Sequence
from pathlib import Path

from conduitd_orchestrators.summary import ConduitdRunFailed, RunSummary, manifest_size, summary_from_manifest

log = logging.getLogger(__name__)

DEFAULT_COMMAND = (sys.executable, "-m", "conduitd")
DRAIN_GRACE_S = 60.0
"""After a timeout the run gets SIGTERM (it commits what is queued and exits) and this long to do
it before it is killed."""


def configured_manifest(config: str | Path) -> Path | None:
    """`service.manifest_path` of the config at `config`, resolved as conduitd resolves it; None
    when the file cannot be loaded (the run itself then reports why, with exit code 2) or sets
    none. Loading reads `.env` into a copy of the environment, never into this process's."""
    from conduitd.configfile import load_config
    from conduitd.errors import ConduitError

    try:
        manifest = load_config(config, environ=dict(os.environ)).service.manifest_path
    except ConduitError:
        return None
    return None if manifest is None else Path(manifest)


def run_local(config: str | Path, pipeline: str, *, manifest_path: str | Path | None = None,
              command: Sequence[str] = DEFAULT_COMMAND, env: Mapping[str, str] | None = None,
              timeout: float | None = None, cwd: str | Path | None = None) -> RunSummary:
    """Run `pipeline` of the config at `config` once (everything present at start is committed)
    and return its summary; raise ConduitdRunFailed on a non-zero exit with conduitd's one-line
    reason (`retriable` is true for exit 5). The manifest is `manifest_path`, else the config's
    `service.manifest_path`; a config with neither is refused with exit code 2 before the run.
    `command` starts conduitd (default: this Python's `-m conduitd`); `env` replaces the
    environment; after `timeout` seconds the run is stopped (SIGTERM: it drains) and fails."""
    manifest = Path(manifest_path) if manifest_path is not None else configured_manifest(config)
    argv = [*command, "--once", "-c", str(config), "-p", pipeline]
    offset = manifest_size(manifest) if manifest is not None else 0
    tail: deque[str] = deque(maxlen=50)
    log.info("running %s", " ".join(argv))
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace",
                               env=dict(env) if env is not None else None, cwd=cwd)
    reader = threading.Thread(target=_relay, args=(process, tail), daemon=True)
    reader.start()
    timed_out = False
    try:
        code = process.wait(timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        process.send_signal(signal.SIGTERM)
        try:
            code = process.wait(DRAIN_GRACE_S)
        except subprocess.TimeoutExpired:
            process.kill()
            code = process.wait()
    reader.join(10)
    summary = summary_from_manifest(manifest, offset, pipeline, code) if manifest is not None else None
    if timed_out:
        raise ConduitdRunFailed(code or 1, f"stopped after the timeout of {timeout} s", summary)
    if code != 0:
        raise ConduitdRunFailed(code, _reason(tail, summary), summary)
    if manifest is None:
        raise ConduitdRunFailed(2, "the run left no summary: set service.manifest_path in the config "
                                   "(or pass manifest_path)")
    if summary is None:
        raise ConduitdRunFailed(1, f"the run exited 0 but wrote no manifest record for {pipeline!r} to {manifest}")
    return summary


def _relay(process: subprocess.Popen[str], tail: deque[str]) -> None:
    assert process.stdout is not None
    for line in process.stdout:
        line = line.rstrip("\n")
        tail.append(line)
        log.info("conduitd: %s", line)


def _reason(tail: deque[str], summary: RunSummary | None) -> str:
    """conduitd's own error line (`conduitd: error: ...`), else the pipeline's error, else the
    last line it printed."""
    for line in reversed(tail):
        if "conduitd: error:" in line:
            return line.split("conduitd: error:", 1)[1].strip()
    if summary is not None and summary.error:
        return summary.error
    return tail[-1] if tail else "no output"
