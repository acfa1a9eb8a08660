"""Quality rules: every check and action, precedence, and the edge cases of the semantics."""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pytest
from pydantic import ValidationError

from conduitd.core.quality import QualityCheck, evaluate


def check(**spec: Any) -> QualityCheck:
    return QualityCheck.model_validate(spec)


def failing_rows(data: list[Any], **spec: Any) -> list[int]:
    verdict = evaluate(pa.table({"c": data}), [check(column="c", action="dlq", **spec)])
    return [v.row for v in verdict.rejected]


def test_not_null_fails_null_and_empty_string_but_not_zero_or_false() -> None:
    assert failing_rows(["a", None, "", " "], check="not_null") == [1, 2]
    assert failing_rows([0, None, 5], check="not_null") == [1]
    assert failing_rows([False, None, True], check="not_null") == [1]


def test_unique_within_the_batch_first_occurrence_passes() -> None:
    assert failing_rows([1, 2, 1, 3, 2, 1], check="unique") == [2, 4, 5]
    assert failing_rows(["a", None, None, "a"], check="unique") == [3]


def test_regex_is_a_full_match_and_non_strings_fail() -> None:
    assert failing_rows(["a@b", "xa@b", "a@bx", "a@b@c", None], check="regex", pattern="[^@]+@[^@]+") == [3]
    assert failing_rows(["abc", "abcd"], check="regex", pattern="abc") == [1]  # no prefix match
    assert failing_rows([1, 2], check="regex", pattern="1") == [0, 1]


def test_range_is_inclusive_and_reads_numeric_strings() -> None:
    assert failing_rows(["25", "abc", "18", "30", "30.5", " 20 ", None], check="range", min=18, max=30) == [1, 4]
    assert failing_rows([17, 18, 30, 31, 2.5e1], check="range", min=18, max=30) == [0, 3]
    assert failing_rows([-1, 0, 1], check="range", min_value=0) == [0]
    assert failing_rows([True], check="range", max=5) == [0]


def test_in_list_and_its_aliases() -> None:
    assert failing_rows(["new", "paid", "lost", None], check="in_list", values=["new", "paid"]) == [2]
    assert failing_rows(["x", "y"], check="enum", allowed_values=["x"]) == [1]
    assert failing_rows([1, 2, 3], check="in_list", values=[1, 3]) == [1]
    assert failing_rows([1, 2], check="in_list", values=["1"]) == [1]


def test_precedence_fail_over_dlq_over_warn() -> None:
    rows = pa.table({"a": [1, None, 3, 4], "b": ["x", "x", "bad", "x"]})
    rules = [check(column="b", check="in_list", values=["x"], action="warn"),
             check(column="a", check="not_null", action="dlq"),
             check(column="b", check="regex", pattern="x", action="dlq", name="b-is-x")]
    verdict = evaluate(rows, rules)
    assert verdict.failure is None
    assert [(v.row, v.rule) for v in verdict.rejected] == [(1, "not_null:a"), (2, "b-is-x")]
    assert verdict.warned == []  # row 2 broke a warn rule too, but it goes to the DLQ
    assert verdict.counts == {("in_list:b", "warn"): 1, ("not_null:a", "dlq"): 1, ("b-is-x", "dlq"): 1}

    rules.append(check(column="a", check="range", max=3, action="fail"))
    failed = evaluate(rows, rules)
    assert failed.failure is not None
    assert (failed.failure.row, failed.failure.rule, failed.failure.value) == (3, "range:a", "4")
    assert failed.rejected == []


def test_warned_rows_are_listed_when_nothing_stronger_applies() -> None:
    verdict = evaluate(pa.table({"a": [1, 50]}), [check(column="a", check="range", max=10, action="warn")])
    assert [(v.row, v.value) for v in verdict.warned] == [(1, "50")]


def test_a_missing_column_is_all_nulls() -> None:
    verdict = evaluate(pa.table({"a": [1]}), [check(column="nope", check="not_null")])
    assert [v.row for v in verdict.rejected] == [0]


@pytest.mark.parametrize(("spec", "message"), [
    ({"check": "regex", "pattern": "(unclosed"}, "invalid regular expression"),
    ({"check": "regex"}, "needs 'pattern'"),
    ({"check": "range"}, "needs 'min'"),
    ({"check": "range", "min": 5, "max": 1}, "'min' is above 'max'"),
    ({"check": "in_list"}, "needs 'values'"),
    ({"check": "is_positive"}, "check"),
    ({"check": "not_null", "action": "explode"}, "action"),
])
def test_invalid_rules_are_rejected_at_load_time(spec: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        check(column="c", **spec)
