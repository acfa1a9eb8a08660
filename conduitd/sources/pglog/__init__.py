"""Log-based change capture from PostgreSQL (`type: postgres, mode: log`): see `source`."""

from __future__ import annotations

from conduitd.sources.pglog.source import LogSource

__all__ = ["LogSource"]
