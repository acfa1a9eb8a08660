"""`mode: full_refresh` on a file destination: the run's batches go to a staging table
(`<table>__conduitd_refresh`, parts in a folder of its own), published commit by commit like any
table; once the source is read to its end, ONE state publication makes copies of the staging
parts (hard links locally, server-side copies on S3) the table's parts, drops the old parts and
the staging table, and resets the pipeline's checkpoints. Readers of the state file (and of the
single output file, rewritten from the new parts after the publication) see the old rows or the
new ones, never a mix; a run that does not finish leaves the table as it was, and the next run
starts the load over. Pure state changes here; the copies are `FileTransaction.adopt`."""

from __future__ import annotations

from conduitd.destinations.files.state import State, Table
from conduitd.destinations.sql.refresh import SUFFIX, staging_name

__all__ = ["SUFFIX", "begin", "is_staging", "staging_name", "take_staging"]


def is_staging(table: str) -> bool:
    return table.endswith(SUFFIX)


def begin(state: State, pipeline: str, target: str, staging: str) -> list[str]:
    """Reset the pipeline's checkpoints and give it an empty staging table with the target's
    columns (none when there is no target yet: the run creates it as it would the target).
    Returns the parts of an earlier, unfinished run's staging table: to be removed."""
    state.checkpoints.pop(pipeline, None)
    old = state.tables.pop(staging, None)
    live = state.tables.get(target)
    if live is not None:
        state.tables[staging] = Table(list(live.columns))
    return [] if old is None else [p.name for p in old.parts]


def take_staging(state: State, pipeline: str, target: str, staging: str) -> tuple[Table | None, list[str]]:
    """Remove the staging table from `state` and reset the checkpoints; return the staging table
    and the target's parts the swap replaces. The target keeps its place (single-file mode
    writes the first table that is not a staging one) and gets the staging table's columns
    (schema evolution ran there), any column it had that the run did not see kept at the end."""
    staged = state.tables.pop(staging, None)
    state.checkpoints.pop(pipeline, None)
    live = state.tables.get(target)
    replaced = [] if live is None else [p.name for p in live.parts]
    if staged is None:
        if live is not None:
            live.parts = []
        return None, replaced
    columns = list(staged.columns)
    seen = {name for name, _ in columns}
    if live is not None:
        columns += [c for c in live.columns if c[0] not in seen]
        live.columns, live.parts = columns, []
    else:
        state.tables[target] = Table(columns)
    return staged, replaced
