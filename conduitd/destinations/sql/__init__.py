"""What every SQL destination shares: the bookkeeping tables (checkpoints, DLQ, schema history)
and their statements, written once over a small driver adapter (`SqlDriver`), and the steps of a
`Transaction` that are bookkeeping. A SQL destination brings only its driver glue, its dialect and
its fast paths (bulk writes, deletes, screening refused rows)."""

from conduitd.destinations.sql.bookkeeping import CHECKPOINTS, HISTORY, Bookkeeping
from conduitd.destinations.sql.destination import SqlDestination
from conduitd.destinations.sql.driver import BookkeepingTypes, SqlDriver
from conduitd.destinations.sql.transaction import SqlTransaction

__all__ = ["CHECKPOINTS", "HISTORY", "Bookkeeping", "BookkeepingTypes", "SqlDestination", "SqlDriver", "SqlTransaction"]
