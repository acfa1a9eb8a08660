"""ClickHouse destination (`type: clickhouse`): embedded through chdb (`path:`) or a server through
its HTTP interface with clickhouse-connect (`url:`).

ClickHouse has no multi-statement transactions. A batch is still written effectively once: its
steps are gathered (`transaction`), then written as single-block inserts whose last is the
checkpoints, the commit point; every row carries the batch's id, so a batch that fails before
its checkpoint is deleted by id, at once or when the pipeline restarts (`flush` says exactly
what readers may see meanwhile). Upsert tables are `ReplacingMergeTree`s read with FINAL.

This package's `__init__` imports no driver (the registry reads `CAPABILITIES` here); the
destination is `destination.ClickHouseDestination`, the config `settings.ClickHouseDestinationConfig`,
the registry's declaration `connector.CLICKHOUSE`.
"""

from __future__ import annotations

from conduitd.destinations.base import Capabilities

CAPABILITIES = Capabilities(transactional_ddl=False, savepoints=False, upsert=True, prepare_ahead=True,
                            atomic_checkpoint=True, deletes=True, leases=False)
"""DDL is not transactional: schema changes run as their own step first. A refused value is known
only when the batch is flushed: it fails the batch (no savepoints). `atomic_checkpoint`: the
batch's rows and positions commit together as far as the pipeline's state goes (a batch whose
checkpoint was not stored is deleted before the next one), though readers may see its rows
during its flush (see `flush`). No leases: ClickHouse has no insert that keeps an existing row alone."""

__all__ = ["CAPABILITIES"]
