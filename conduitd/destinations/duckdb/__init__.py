"""DuckDB, the embedded analytical destination (`type: duckdb, path:`), through the `duckdb`
package (the `duckdb` extra), run off the event loop on one worker thread (`driver`).

- Rows go in as Arrow: the batch's Arrow table is registered with the connection and loaded by
  one `INSERT ... SELECT` (no per-row Python); `mode: upsert` adds `ON CONFLICT (key) DO UPDATE`.
- Rows, DLQ rows, schema changes (DuckDB's DDL is transactional) and checkpoints commit in one
  transaction; DuckDB's write-ahead log keeps a killed process from losing or half-writing a
  committed batch.
- DuckDB has no savepoints: a row it refuses (a NULL key, a value out of range) fails the
  batch, which is not retried; rows conduitd itself rejects (rules, casts) go to the DLQ as
  everywhere.
- DuckDB locks the file for one process: while a pipeline writes it, other processes
  (`conduitd checkpoints show`, a notebook) cannot open it, and the lease table for replicas
  is not offered (one process is all a file can have).
- The control plane's tables (usage per hour, the API's audit log, decisions on pending schema
  changes; `conduitd.destinations.sql.control`) are kept in the file beside the checkpoints, and
  usage is added in each batch's transaction, as in the other SQL destinations. The daemon's API
  reads them in the process that writes the file, through a connection sharing its database (`held`).

Importing this package imports no driver (`CAPABILITIES` is read when connectors are listed).
"""

from conduitd.destinations.base import Capabilities

CAPABILITIES = Capabilities(transactional_ddl=True, savepoints=False, upsert=True, prepare_ahead=True,
                            atomic_checkpoint=True, deletes=True, leases=False, control=True)

__all__ = ["CAPABILITIES"]
