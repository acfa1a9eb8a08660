"""MySQL and MariaDB destination (`type: mysql`, asyncmy): rows by multi-row INSERT, upserts by
`ON DUPLICATE KEY UPDATE`, DLQ rows and checkpoints in the same InnoDB transaction.

This package's `__init__` imports no driver (the registry reads `CAPABILITIES` here); the
destination is `destination.MysqlDestination`, the config `settings.MysqlDestinationConfig`,
the registry's declaration `connector.MYSQL`.
"""

from __future__ import annotations

from conduitd.destinations.base import Capabilities

CAPABILITIES = Capabilities(control=True, transactional_ddl=False, savepoints=True, upsert=True, prepare_ahead=True,
                            atomic_checkpoint=True, deletes=True, leases=True)
"""DDL commits implicitly in MySQL: schema changes run as their own step before the batch."""

__all__ = ["CAPABILITIES"]
