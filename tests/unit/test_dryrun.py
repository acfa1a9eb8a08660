"""The dry run behind `validate` and `schema-compare` (`conduitd.runtime.dryrun`): run's own
`prepare`, batch after batch, nothing written. Pure: no service."""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

from conduitd.config import PipelineConfig
from conduitd.core.records import Batch, Origin
from conduitd.core.schema import Column
from conduitd.destinations.postgres.ddl import column_from_catalog
from conduitd.destinations.postgres.dialect import PostgresDialect
from conduitd.errors import SchemaIncompatible
from conduitd.runtime.dryrun import dry_run
from conduitd.runtime.inspection import inspect

PG = PostgresDialect("s")


def pipeline(**extra: Any) -> PipelineConfig:
    return PipelineConfig.model_validate({"name": "ev", "source": "s", "destination": "d", **extra})


def batch(**columns: list[Any]) -> Batch:
    rows = pa.table(columns)
    return Batch(rows, (), {"p": None}, {"p": {"offset": rows.num_rows}}, 0, (Origin(0, "p", None),),
                 row_offsets=np.arange(rows.num_rows))


def table(**types: str) -> dict[str, Column]:
    """A live PostgreSQL table of these columns (typname each), as the destination reads it."""
    sql = {"int4": "integer", "int8": "bigint", "text": "text"}
    return {name: column_from_catalog(name, kind, -1, sql[kind]) for name, kind in types.items()}


def test_each_batch_meets_the_table_the_one_before_left() -> None:
    """The first batch adds a column and widens one; the second finds them: each change once."""
    live = table(id="int8", n="int4")
    verdict = dry_run(PG, pipeline(), [batch(id=[1], n=[2**40], x=["a"]), batch(id=[2], n=[2**41], x=["b"])], live)
    assert [(c.kind, c.column, c.applied) for c in verdict.changes] == [("add", "x", True), ("widen", "n", True)]
    assert verdict.columns is not None and verdict.columns["n"].sql == "bigint" and "x" in verdict.columns
    assert live["n"].sql == "integer" and verdict.live is live  # the table as it is stays as it was
    assert verdict.stop is None and not verdict.dead_lettered


def test_a_stop_in_a_later_batch_keeps_what_the_batches_before_would_commit() -> None:
    live = table(id="int8", n="int4")
    verdict = dry_run(PG, pipeline(schema_evolution={"on_type_change": "fail"}),
                      [batch(id=[1], x=["a"]), batch(id=[2], n=[2**40], y=["b"])], live)
    assert isinstance(verdict.stop, SchemaIncompatible) and "'n'" in str(verdict.stop)
    assert [(c.kind, c.column) for c in verdict.changes] == [("add", "x")]  # not y: its batch is not committed


def test_a_quality_rule_that_fails_is_reported_and_the_schema_judged_past_it() -> None:
    rules = [{"column": "n", "check": "range", "min": 0, "action": "fail"}]
    verdict = dry_run(PG, pipeline(quality_checks=rules), [batch(id=[1, 2, 3], n=["-1", "abc", "5"])],
                      table(id="int8", n="int8"))
    assert verdict.quality_stops == {"range:n": (2, "-1")}  # run stops at the first (exit 3)
    assert verdict.stop is None and not verdict.dead_lettered  # the rows it rejects never reach the cast


def test_rows_the_table_cannot_take_are_counted_per_rule_and_column_with_runs_reason() -> None:
    verdict = dry_run(PG, pipeline(), [batch(id=[1, 2, 3], n=["1", "abc", "x"], xmin=[None, 1, None])],
                      table(id="int8", n="int8"))
    # The row with a value in xmin goes to the DLQ for it, before its 'abc' is cast: one reason a row.
    assert dict(verdict.dead_lettered) == {("schema", "xmin"): 1, ("cast", "n"): 1}
    assert verdict.reasons[("cast", "n")] == "column 'n': cannot store 'x' as bigint"
    assert "system column" in verdict.held["xmin"]


def test_the_listing_shows_every_difference_where_the_policy_stops_at_the_first() -> None:
    diff = inspect(PG, pipeline(schema_evolution={"mode": "strict"}),
                   [batch(id=[1], a=["x"], b=[1])], table(id="int8", gone="text"))
    assert [c.name for c in diff.added] == ["a", "b"] and [c.name for c in diff.removed] == ["gone"]
    assert diff.stop is not None and "has no column 'a'" in diff.stop
    assert all(not diff.verdicts[n].reached and diff.verdicts[n].problem for n in ("a", "b", "gone"))
    assert diff.drifted and not diff.would_apply
