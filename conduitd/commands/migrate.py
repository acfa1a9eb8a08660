"""`conduitd migrate-config FILE`: a seed (Conduit Core) config in conduitd's own shape.

It prints what `load_config` validates after `seedcompat.translate` (the same function, so the
two cannot disagree), as YAML with a comment on every key the translation changed, moved, filled
in from the environment or dropped. `${VAR}` references are kept, never expanded: no secret is
printed. The output is not validated here: `conduitd validate -c NEW` checks it against the
services.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TextIO

from conduitd.configfile import read_translated
from conduitd.seedcompat.dotenv import with_dotenv
from conduitd.seedcompat.yamlout import render


def migrated(path: str | Path, environ: Mapping[str, str] | None = None) -> str:
    """The native config text for the config file at `path` (ConfigError when it cannot be
    translated). `environ` (default: the process environment, with `.env`) decides which
    environment fallbacks are referred to."""
    environ = with_dotenv(os.environ if environ is None else environ)
    translation, _ = read_translated(Path(path), environ)
    changed = len({(n.origin, n.text) for n in translation.notes})
    header = (f"conduitd config translated from {Path(path).name} by `conduitd migrate-config`\n"
              f"{changed} change(s), each commented where it is.")
    return render(translation, header)


def migrate_config(path: str | Path, out: TextIO | None = None) -> int:
    """The CLI's `migrate-config`: print the native config; exit code 0."""
    (out or sys.stdout).write(migrated(path))
    return 0
