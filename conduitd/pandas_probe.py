"""Starting without pandas: pyarrow's look for it, skipped while nothing in the process needs it.

The first `pa.array` or `pa.scalar` of a process imports pandas when it is installed (pyarrow
wants to recognise pandas objects handed to it): with pandas 3 that is ~0.27 s of wall time, a
third of a `conduitd --once` run over an empty table. conduitd's own code never hands pyarrow a
pandas object, so a run whose connectors are all built-in lets pyarrow find pandas absent (one
probe with its import refused), and pandas itself stays importable: whoever imports it later
imports it as usual.

What pyarrow then does differently, and how it is undone: `pa.array(series)` would treat a
pandas Series as any array (NaN stays NaN instead of becoming null). So the skip is never taken
when pandas is already imported or a plugin connector is configured (unknown code), and after
each connector is built (`registry.build`), when its modules imported pandas (the Snowflake
connector does), pyarrow is told again (`rearm`: one `to_pandas()` of an empty table, which
makes pyarrow import pandas and recognise its objects from then on).
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import logging
import sys
from collections.abc import Sequence

__all__ = ["own_process", "rearm", "skip_unless_needed"]

log = logging.getLogger(__name__)
_skipped = False
_owned = False


class _RefusePandas(importlib.abc.MetaPathFinder):
    """Makes `import pandas` fail (ImportError) while it sits first in `sys.meta_path`."""

    def find_spec(self, fullname: str, path: Sequence[str] | None,
                  target: object = None) -> importlib.machinery.ModuleSpec | None:
        if fullname == "pandas" or fullname.startswith("pandas."):
            raise ImportError("pandas is not looked for at conduitd's start")
        return None


def own_process() -> None:
    """conduitd owns this process (its entry point runs it): the skip may be taken. Not so when
    `conduitd.cli.main` is called inside another program (tests, embedding), whose use of
    pyarrow is its own business."""
    global _owned
    _owned = True


def skip_unless_needed(*, plugins: bool) -> bool:
    """Let pyarrow find pandas absent, unless conduitd does not own the process, pandas is
    imported already, `plugins` (a plugin connector is configured) or pyarrow has looked before.
    True when skipped."""
    global _skipped
    if not _owned or plugins or "pandas" in sys.modules or _skipped:
        return False
    import pyarrow as pa

    refuse = _RefusePandas()
    sys.meta_path.insert(0, refuse)
    try:
        pa.array([0])  # pyarrow's first look: `import pandas` fails, it notes pandas as absent
    except Exception:  # a pyarrow that lets the refused import through: it looks again later
        log.debug("pyarrow did not take pandas' absence; it imports pandas when it needs to", exc_info=True)
        return False
    finally:
        sys.meta_path.remove(refuse)
    _skipped = "pandas" not in sys.modules
    return _skipped


def rearm() -> None:
    """When the look was skipped and pandas has been imported since: let pyarrow import it and
    recognise pandas objects again."""
    global _skipped
    if not _skipped or "pandas" not in sys.modules:
        return
    import pyarrow as pa

    pa.table({"rearm": pa.array([], pa.int8())}).to_pandas()
    _skipped = False
