"""What `run` would do with some batches, decided by the code `run` decides it with and with
nothing written: `conduitd.core.prepare.prepare` (quality rules, the evolution plan of
`conduitd.core.evolution`, the casts) against the live table's columns, batch after batch, as
if each had committed. `validate` and `schema-compare` report this verdict, so they cannot
disagree with `run`.

Not covered: what only the destination can say when rows are written (a constraint, a row too
large), and decode errors of the source (they are not schema problems).
"""

from __future__ import annotations

import contextlib
import logging
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from conduitd.config import PipelineConfig
from conduitd.core.dialect import Dialect
from conduitd.core.prepare import prepare
from conduitd.core.records import Batch, SchemaChange
from conduitd.core.schema import Column
from conduitd.errors import ConduitError

SCHEMA_RULES = ("schema", "cast")
"""DLQ rules of rows that the table cannot take as they are (`conduitd.core.prepare`)."""


@dataclass
class DryRun:
    """The verdict of `run` on some batches against a table, nothing written."""

    live: dict[str, Column] | None
    """The table as it is (None: it does not exist)."""
    rows: int = 0
    """Rows in the batches (the sample)."""
    columns: dict[str, Column] | None = None
    """The table after the changes `run` would apply (None: still none)."""
    changes: list[SchemaChange] = field(default_factory=list)
    """Each once, in order: `applied` ones `run` executes as DDL in the batch transaction, the
    others (manual mode) it writes to a migration file."""
    held: dict[str, str] = field(default_factory=dict)
    """Fields the table does not take (a name the destination refuses, past the column limit, a
    repeated field, a column awaiting its migration): rows with a value there go to the DLQ, with
    this reason."""
    dropped: list[str] = field(default_factory=list)
    """Fields whose values are not written (schema_evolution warn)."""
    removed: list[str] = field(default_factory=list)
    """Table columns the data lacks: rows get NULL there."""
    dead_lettered: Counter[tuple[str, str | None]] = field(default_factory=Counter)
    """(rule, column) -> rows `run` puts in the DLQ for their schema (rules `schema` and `cast`)."""
    reasons: dict[tuple[str, str | None], str] = field(default_factory=dict)
    """(rule, column) -> the DLQ reason of the first such row."""
    quality_stops: dict[str, tuple[int, str]] = field(default_factory=dict)
    """Rule with action `fail` -> (sampled rows it rejects, the first value): `run` stops there
    (exit 3). The dry run goes on past them so the schema is judged on every other row."""
    stop: ConduitError | None = None
    """What `run` stops on (SchemaIncompatible, exit 4), with its message; nothing after it is judged."""


def dry_run(dialect: Dialect, pipeline: PipelineConfig, batches: Sequence[Batch],
            live: dict[str, Column] | None) -> DryRun:
    """Prepare `batches` in order as `run` would, each against the table as the previous ones
    would have left it."""
    verdict = DryRun(live=live, columns=live, rows=sum(b.rows.num_rows for b in batches))
    stops = {c.rule for c in pipeline.quality_checks if c.action == "fail"}
    judged = pipeline.model_copy(update={"quality_checks": tuple(
        c.model_copy(update={"action": "dlq"}) if c.action == "fail" else c for c in pipeline.quality_checks)})
    warned: set[str] = set()
    seen: set[tuple[str, str | None, str | None, bool]] = set()
    table = live
    with _quiet():  # the verdict is the report: the plan's warnings would only repeat it
        for batch in batches:
            prepared = prepare(dialect, judged, batch, table, removed_warned=warned)
            if prepared.failure is not None:  # the batch is not committed: none of its changes or rejects stand
                verdict.stop = prepared.failure
                break
            for reject in prepared.rejects[len(batch.rejects):]:
                if reject.rule in stops:
                    count, value = verdict.quality_stops.get(reject.rule, (0, reject.value or ""))
                    verdict.quality_stops[reject.rule] = (count + 1, value)
                elif reject.rule in SCHEMA_RULES:
                    where = (reject.rule, reject.column)
                    verdict.dead_lettered[where] += 1
                    verdict.reasons.setdefault(where, reject.reason)
                    if reject.rule == "schema" and reject.column is not None:
                        verdict.held.setdefault(reject.column, reject.reason)  # a repeated field
            evolution = prepared.evolution
            if evolution is not None:
                for name, reason in evolution.held.items():
                    verdict.held.setdefault(name, reason)
                verdict.dropped += [n for n in evolution.dropped if n not in verdict.dropped]
                for change in evolution.changes:
                    if (change.kind, change.column, change.ddl, change.applied) not in seen:
                        seen.add((change.kind, change.column, change.ddl, change.applied))
                        verdict.changes.append(change)
                if any(c.applied for c in evolution.changes):
                    table = dict(evolution.columns)  # as the next batch would find it after COMMIT
    verdict.columns = table
    verdict.removed = [n for n in (table or {}) if n in warned]
    return verdict


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    logger = logging.getLogger("conduitd.core.evolution")
    before, logger.disabled = logger.disabled, True
    try:
        yield
    finally:
        logger.disabled = before
