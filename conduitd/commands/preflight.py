"""Pre-flight checks, in the words of the seed tool (Conduit Core): `conduit preflight` is what
`validate` checks (config, rules, connectivity, outputs, the schema dry run on a sample) shown as
PASS/WARN/FAIL lines, and `run --once` starts with the cheap part of it (no data read).

The statuses and exit codes are `validate`'s (`conduitd.commands.validate`), so the three cannot
disagree: 2 for config and outputs, 5 unreachable, 1 another error `run` stops on at start, 4 the
schema."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Sequence

from conduitd.commands.validate import checks_of, exit_code_of
from conduitd.config import Config
from conduitd.core.redact import redact

log = logging.getLogger("conduitd")

WORDS = {"ok": "PASS", "warning": "WARN"}
"""validate's status -> the seed's word; every other status is a FAIL."""


async def show_preflight(config: Config, only: Sequence[str]) -> int:
    """`conduit preflight`: every check `validate` makes, printed as the seed printed them."""
    started = time.monotonic()
    print("Running preflight checks...\n")
    checks = await checks_of(config, only)
    rows = [(f"[{c.pipeline}] {c.check}", WORDS.get(c.status, "FAIL"), redact(c.detail)) for c in checks]
    widths = [max(len(r[i]) for r in [*rows, ("Check", "Status", "")]) for i in range(2)]
    print(f"{'Check':<{widths[0]}}  {'Status':<{widths[1]}}  Message")
    for name, word, detail in rows:
        print(f"{name:<{widths[0]}}  {word:<{widths[1]}}  {detail}")
    failed = [r for r in rows if r[1] == "FAIL"]
    warned = [r for r in rows if r[1] == "WARN"]
    print(f"\nPreflight completed in {time.monotonic() - started:.2f}s")
    if failed:
        print(f"Preflight failed: {len(failed)} check(s) failed, {len(warned)} warning(s)")
    else:
        print(f"All checks passed ({len(warned)} warning(s))")
    return exit_code_of(checks)


async def preflight_before_run(config: Config, only: Sequence[str]) -> int:
    """The pre-flight of `run --once`: config, rules, connectivity, outputs and the destination's
    write problems, before any pipeline reads a record, so a problem of one pipeline stops the run
    before another has written anything. Reads no data (no sample, no schema dry run).

    A dependency that does not answer now is left to `run`, which retries it for
    `service.once_retry_timeout` (it may be coming up) and exits 5 if it stays away; every other
    problem stops here with validate's exit code, each on its own line. 0: go ahead."""
    checks = await checks_of(config, only, sample=False)
    unreachable = [c for c in checks if c.status == "unreachable"]
    for check in unreachable:
        log.warning("pre-flight: %s: %s: %s (run retries it)", check.pipeline, check.check, redact(check.detail),
                    extra={"pipeline": check.pipeline})
    problems = [c for c in checks if c.status not in ("ok", "warning", "unreachable")]
    for check in problems:
        print(redact(f"conduitd: error: pre-flight: {check.pipeline}: {check.check}: {check.detail}"),
              file=sys.stderr)
    if problems:
        print("conduitd: the run did not start: nothing was read or written (--skip-preflight skips these checks)",
              file=sys.stderr)
    return exit_code_of(problems)

