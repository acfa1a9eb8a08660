"""Data-quality rules, pure and vectorised: a batch's columns in, a verdict per row out.

Checks: `not_null` (null or empty string fails), `unique` (within the batch: the first occurrence
passes, later duplicates fail), `regex` (full match; a non-string value fails), `range` (inclusive
`min`/`max`; numeric strings are read as numbers, other strings fail), `in_list` (the value,
compared as text when the column is not text, is one of `values`). A null breaks only `not_null`:
the other checks judge the values that are there (pair them with `not_null` to forbid nulls).
Actions: `dlq` (the row is kept out of the table and written to the DLQ), `warn` (written,
counted, logged), `fail` (the batch is not committed; the pipeline stops with exit code 3).
For one row: fail > dlq > warn; among rules of the same action the first listed is reported.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import AllowInfNan, BaseModel, BeforeValidator, ConfigDict, Field, model_validator

Action = Literal["fail", "warn", "dlq"]
_ALIASES = {"enum": "in_list", "allowed_values": "in_list"}


def _not_a_boolean(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError("expected a number, got a boolean")
    return value


Bound = Annotated[float, BeforeValidator(_not_a_boolean), AllowInfNan(False)]
"""A range bound: a finite number (NaN would make every comparison false and pass every row)."""


class QualityCheck(BaseModel):
    """One rule of `quality_checks`."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    column: str = Field(min_length=1)
    check: Literal["not_null", "unique", "regex", "range", "in_list"]
    action: Action = "dlq"
    pattern: str | None = None
    min: Bound | None = Field(None, alias="min_value")
    max: Bound | None = Field(None, alias="max_value")
    values: tuple[Any, ...] | None = Field(None, alias="allowed_values")
    name: str | None = None
    """How the rule is named in the DLQ, logs and metrics; defaults to `<check>:<column>`."""

    @model_validator(mode="before")
    @classmethod
    def _aliases(cls, data: Any) -> Any:
        if isinstance(data, dict):
            data = dict(data)
            if data.get("check") in _ALIASES:
                data["check"] = _ALIASES[data["check"]]
            for short, long in (("min", "min_value"), ("max", "max_value"), ("values", "allowed_values")):
                if short in data and long in data:
                    raise ValueError(f"give '{short}' or '{long}', not both")
                if short in data:
                    data[long] = data.pop(short)
        return data

    @model_validator(mode="after")
    def _arguments(self) -> QualityCheck:
        if "\x00" in self.column or (self.pattern and "\x00" in self.pattern):
            raise ValueError("a NUL character is not allowed here")
        if self.check == "regex":
            if not self.pattern:
                raise ValueError("check 'regex' needs 'pattern'")
            try:
                pc.match_substring_regex(pa.array([""]), _anchored(self.pattern))
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                raise ValueError(f"invalid regular expression {self.pattern!r}: {exc}") from None
        if self.check == "range" and self.min is None and self.max is None:
            raise ValueError("check 'range' needs 'min' and/or 'max'")
        if self.check == "range" and self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError("'min' is above 'max'")
        if self.check == "in_list" and not self.values:
            raise ValueError("check 'in_list' needs 'values' (or 'allowed_values')")
        return self

    @property
    def rule(self) -> str:
        return self.name or f"{self.check}:{self.column}"


def _anchored(pattern: str) -> str:
    return f"^(?:{pattern})$"


@dataclass(frozen=True, slots=True)
class Violation:
    """The rule a row broke (the one reported under the precedence), and the offending value."""

    row: int
    rule: str
    column: str
    action: Action
    value: str | None


@dataclass
class Verdict:
    """What the rules say of one batch."""

    failure: Violation | None = None
    """The first row a `fail` rule rejected (None: commit)."""
    rejected: list[Violation] = field(default_factory=list)
    """Rows to keep out of the table and write to the DLQ, one entry each."""
    warned: list[Violation] = field(default_factory=list)
    """Rows written, but counted and logged."""
    counts: dict[tuple[str, str], int] = field(default_factory=dict)
    """(rule, action) -> rows that broke it (every rule a row broke counts)."""

    @property
    def dlq_mask(self) -> np.ndarray:
        mask = np.zeros(0, dtype=bool)
        if self.rejected:
            mask = np.zeros(max(v.row for v in self.rejected) + 1, dtype=bool)
            mask[[v.row for v in self.rejected]] = True
        return mask


def evaluate(rows: pa.Table, checks: Sequence[QualityCheck]) -> Verdict:
    """Apply `checks` to every row of `rows`."""
    verdict = Verdict()
    if not checks or rows.num_rows == 0:
        return verdict
    n = rows.num_rows
    first_by_action: dict[Action, np.ndarray] = {a: np.full(n, -1) for a in ("fail", "dlq", "warn")}
    for index, check in enumerate(checks):
        failed = _failures(rows, check)
        count = int(np.count_nonzero(failed))
        if not count:
            continue
        key = (check.rule, check.action)
        verdict.counts[key] = verdict.counts.get(key, 0) + count
        first = first_by_action[check.action]
        first[failed & (first < 0)] = index
    fail_rows = np.flatnonzero(first_by_action["fail"] >= 0)
    if len(fail_rows):
        first_failed = int(fail_rows[0])
        verdict.failure = _violation(rows, checks[int(first_by_action["fail"][first_failed])], first_failed)
        return verdict
    dlq = first_by_action["dlq"]
    verdict.rejected = [_violation(rows, checks[int(dlq[r])], int(r)) for r in np.flatnonzero(dlq >= 0)]
    warn = first_by_action["warn"]
    verdict.warned = [_violation(rows, checks[int(warn[r])], int(r)) for r in np.flatnonzero((warn >= 0) & (dlq < 0))]
    return verdict


def _violation(rows: pa.Table, check: QualityCheck, row: int) -> Violation:
    value = rows.column(check.column)[row].as_py() if check.column in rows.column_names else None
    return Violation(row, check.rule, check.column, check.action, None if value is None else str(value)[:1000])


def _failures(rows: pa.Table, check: QualityCheck) -> np.ndarray:
    """Boolean mask of the rows that break `check` (a missing column is all nulls)."""
    if check.column in rows.column_names:
        column = rows.column(check.column).combine_chunks()
    else:
        column = pa.nulls(rows.num_rows)
    if check.check == "not_null":
        bad = column.is_null()
        if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
            bad = pc.or_kleene(bad, pc.equal(pc.utf8_length(column), 0))
    elif check.check == "unique":
        bad = _later_duplicates(column)
    elif check.check == "regex":
        assert check.pattern is not None
        if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
            bad = pc.invert(pc.match_substring_regex(column, _anchored(check.pattern)))
        else:
            bad = column.is_valid()  # a value that is not a string fails a regex
    elif check.check == "range":
        bad = _out_of_range(column, check.min, check.max)
    else:
        bad = pc.and_(column.is_valid(), _not_in(column, check.values or ()))
    # A null breaks only not_null: the other checks judge values that are there.
    return np.asarray(pc.fill_null(bad, False).to_numpy(zero_copy_only=False), dtype=bool)


def _later_duplicates(column: pa.Array) -> pa.Array:
    """True for every occurrence of a value after its first; nulls are not duplicates."""
    if len(column) == 0:
        return pa.array([], pa.bool_())
    indexed = pa.table({"v": column, "i": pa.array(np.arange(len(column)))})
    first = indexed.group_by("v", use_threads=False).aggregate([("i", "min")])
    keep = np.zeros(len(column), dtype=bool)
    keep[first.column("i_min").to_numpy()] = True
    nulls = np.asarray(column.is_null().to_numpy(zero_copy_only=False), dtype=bool)
    return pa.array(~keep & ~nulls)


def _out_of_range(column: pa.Array, low: float | None, high: float | None) -> pa.Array:
    kind = column.type
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        stripped = pc.utf8_trim_whitespace(column)
        numeric = pc.match_substring_regex(stripped, r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")
        values = pc.if_else(numeric, stripped, pa.scalar(None, pa.string())).cast(pa.float64())
        bad = pc.invert(numeric)
    elif pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_decimal(kind):
        values = column.cast(pa.float64())
        bad = pa.array(np.zeros(len(column), dtype=bool))
    else:
        return column.is_valid()  # booleans, dates, objects: not numbers
    if low is not None:
        bad = pc.or_kleene(bad, pc.less(values, low))
    if high is not None:
        bad = pc.or_kleene(bad, pc.greater(values, high))
    return pc.or_kleene(bad, pc.is_nan(values)) if pa.types.is_floating(values.type) else bad


def _not_in(column: pa.Array, allowed: Sequence[Any]) -> pa.Array:
    kind = column.type
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return pc.invert(pc.is_in(column, pa.array([str(v) for v in allowed], pa.string())))
    try:
        return pc.invert(pc.is_in(column, pa.array(list(allowed)).cast(kind)))
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        text = column.cast(pa.string())
        return pc.invert(pc.is_in(text, pa.array([str(v) for v in allowed], pa.string())))
