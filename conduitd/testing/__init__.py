"""The connector test kit, shipped with conduitd.

- In-memory twins that fail on cue: `MemoryDestination` (over a `MemoryStore`, with the
  `MemoryDialect`), `MemorySource` (over a `MemoryFeed`), `MemoryDlqSink`. Failures are armed
  with `FailAt` / `Faults` at a named step of the commit protocol's transaction.
- `FaultyDestination`: the same failures in front of any destination, a real one included.
- `conduitd.testing.contract`: `DestinationContract` and `SourceContract`, pytest classes a
  connector author subclasses to prove a connector keeps the contracts of
  `conduitd.destinations.base` and `conduitd.sources.base` (the only module here that imports
  pytest; import it from your tests).
"""

from conduitd.testing.faults import (
    ANY,
    STEPS,
    ContractViolation,
    Crash,
    FailAt,
    Faults,
    FaultyDestination,
    FaultyTransaction,
)
from conduitd.testing.memory_destination import MemoryDestination
from conduitd.testing.memory_dialect import MemoryDialect, MemoryPayload
from conduitd.testing.memory_dlq import MemoryDlqSink
from conduitd.testing.memory_source import MemoryFeed, MemorySource, Tombstone
from conduitd.testing.memory_store import MemoryStore, State

__all__ = [
    "ANY", "STEPS", "ContractViolation", "Crash", "FailAt", "Faults", "FaultyDestination", "FaultyTransaction",
    "MemoryDestination", "MemoryDialect", "MemoryDlqSink", "MemoryFeed", "MemoryPayload", "MemorySource",
    "MemoryStore", "State", "Tombstone",
]
