"""The pglog additions on the captured messages of `test_pgoutput`: each change's op (and the
op column), deletes as rows for append mode, TRUNCATE seen in its transaction, and the skip of
transactions handed over already (counted, not decoded), which must not change what is fresh."""

from __future__ import annotations

import pytest

from conduitd.sources.pglog import pgoutput as po
from conduitd.sources.pglog.rows import to_rows
from conduitd.sources.pglog.slot import setup_statements
from conduitd.sources.pglog.transactions import group
from tests.unit.test_pgoutput import CAPTURED, TRUNCATE, TYPES


def _type(oid: int, modifier: int) -> str:
    return TYPES[oid, modifier]


def test_every_change_says_what_made_it_and_the_op_column_holds_it() -> None:
    types: dict[str, str] = {}
    txns = group(CAPTURED, ("public", "t"), types, _type, deletes=True)
    changes = [c for t in txns for c in t.changes]
    assert [(c.op, c.delete) for c in changes] == [
        ("insert", False), ("insert", False), ("update", False), ("delete", True), ("update", False),
        ("delete", True), ("insert", False)]
    rows = to_rows(changes, types, "public.t", None, op_column="_op")
    assert rows.table.column_names[-1] == "_op"
    assert rows.table.column("_op").to_pylist() == [c.op for c in changes]
    assert "_op" not in to_rows(changes, types, "public.t", None).table.column_names


def test_append_mode_with_an_op_column_keeps_deletes_as_rows() -> None:
    types: dict[str, str] = {}
    txns = group(CAPTURED, ("public", "t"), types, _type, deletes=False, delete_rows=True)
    changes = [c for t in txns for c in t.changes]
    assert [(c.op, c.values.get("id")) for c in changes] == [
        ("insert", "1"), ("insert", "2"), ("update", "1"), ("delete", "2"), ("update", "3"), ("delete", "1"),
        ("insert", "4")]
    assert not any(c.delete for c in changes)
    assert to_rows(changes, types, "public.t", None, op_column="_op").deletes is None  # nothing is deleted


def test_a_truncate_marks_its_transaction() -> None:
    begin, commit = CAPTURED[5], CAPTURED[7]
    (txn,) = group([CAPTURED[1], begin, CAPTURED[1], TRUNCATE, commit], ("public", "t"), {}, _type, deletes=True)
    assert txn.truncated
    (other,) = group([begin, CAPTURED[1], TRUNCATE, commit], ("public", "u"), {}, _type, deletes=True)
    assert not other.truncated


@pytest.mark.parametrize("handed", range(6))
def test_transactions_handed_over_are_counted_not_decoded(handed: int) -> None:
    whole = group(CAPTURED, ("public", "t"), {}, _type, deletes=True)
    after = whole[handed - 1].end_lsn if handed else -1
    types: dict[str, str] = {}
    skipped = group(CAPTURED, ("public", "t"), types, _type, deletes=True, after=after)
    assert [(t.xid, t.end_lsn, t.messages) for t in skipped] == [(t.xid, t.end_lsn, t.messages) for t in whole]
    assert all(not t.changes for t in skipped[:handed])
    assert [t.changes for t in skipped[handed:]] == [t.changes for t in whole[handed:]]
    assert "extra" in types  # relations are still read


def test_a_value_that_is_not_utf8_is_a_decode_error() -> None:
    with pytest.raises(po.DecodeError):
        po.decode(b"I\x00\x00@\x00N\x00\x01t\x00\x00\x00\x01\xff")


def test_setup_alters_a_publication_made_without_truncate() -> None:
    assert setup_statements("s", "t", "n", have_publication=True, have_slot=True, publishes_truncate=False) == [
        """ALTER PUBLICATION "n" SET (publish = 'insert, update, delete, truncate')"""]
