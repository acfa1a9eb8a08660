"""Sources: where records come from. `open_source` picks the implementation for a config."""

from __future__ import annotations

from conduitd.config import SourceConfig
from conduitd.sources.base import Source
from conduitd.sources.files import FileSource


def open_source(config: SourceConfig, *, once: bool, max_rows: int) -> Source:
    """The source for `config`; `once` makes it stop where the data stood at start."""
    return FileSource(config, once=once, max_rows=max_rows)


__all__ = ["Source", "open_source"]
