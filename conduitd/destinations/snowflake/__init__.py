"""Snowflake destination (`type: snowflake`, snowflake-connector-python): appends by a staged bulk
load (the rows as a Parquet file, `PUT` to a session stage, `COPY INTO` the table), upserts by
delete and load (see `transaction`), DLQ rows and checkpoints in the same explicit transaction (BEGIN ... COMMIT).

This package's `__init__` imports no driver (the registry reads `CAPABILITIES` here); the
destination is `destination.SnowflakeDestination`, the config `settings.SnowflakeDestinationConfig`,
the registry's declaration `connector.SNOWFLAKE`.
"""

from __future__ import annotations

from conduitd.destinations.base import Capabilities

CAPABILITIES = Capabilities(transactional_ddl=False, savepoints=False, upsert=True, prepare_ahead=True,
                            atomic_checkpoint=True, deletes=True, leases=False)
"""DDL commits the open transaction in Snowflake: schema changes run as their own step first.
Snowflake has no savepoints: the rows it would refuse for what its catalog says (NOT NULL,
lengths) are found before the write and dead-lettered (`screen`); another refused value fails
the batch. Leases need an INSERT that keeps an
existing row alone under concurrency, which Snowflake (no enforced keys) lacks: none."""

__all__ = ["CAPABILITIES"]
