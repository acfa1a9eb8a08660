"""Log-based change capture from MariaDB/MySQL (`type: mysql, mode: log`): see `source`."""

from __future__ import annotations

from conduitd.sources.mysqllog.source import MysqlLogSource

__all__ = ["MysqlLogSource"]
