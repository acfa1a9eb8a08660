"""The pgoutput decoder, the grouping into transactions, the snapshot filter and the rows, on
messages captured from a PostgreSQL 15+ server (`pg_logical_slot_peek_binary_changes`, protocol
version 1) for this script on table `t (id int PRIMARY KEY, name text, amount numeric(10,2),
ok boolean, at timestamptz)`:
    INSERT (1,'a',1.5,true,'2024-01-02 03:04:05+00'), (2,NULL,NULL,false,NULL);
    UPDATE t SET name='b' WHERE id=1;  UPDATE t SET id=3 WHERE id=2;  DELETE FROM t WHERE id=1;
    ALTER TABLE t ADD COLUMN extra text;  INSERT (4,'d',NULL,NULL,NULL,'x')"""

from __future__ import annotations

import numpy as np
import pytest

from conduitd.sources.pglog import pgoutput as po
from conduitd.sources.pglog.rows import Change, to_rows
from conduitd.sources.pglog.slot import setup_statements, slot_name
from conduitd.sources.pglog.transactions import SnapshotFilter, Transaction, group

CAPTURED = [
    b'B\x00\x00\x00\x00\x01S\xb7\xa8\x00\x03\x04|\xba\x0e\xe0\xc3\x00\x00\x02\xd6',
    b'R\x00\x00@\x00public\x00t\x00d\x00\x05\x01id\x00\x00\x00\x00\x17\xff\xff\xff\xff\x00name\x00\x00\x00\x00\x19'
    b'\xff\xff\xff\xff\x00amount\x00\x00\x00\x06\xa4\x00\n\x00\x06\x00ok\x00\x00\x00\x00\x10\xff\xff\xff\xff\x00at'
    b'\x00\x00\x00\x04\xa0\xff\xff\xff\xff',
    b'I\x00\x00@\x00N\x00\x05t\x00\x00\x00\x011t\x00\x00\x00\x01at\x00\x00\x00\x041.50t\x00\x00\x00\x01tt\x00\x00'
    b'\x00\x162024-01-02 03:04:05+00',
    b'I\x00\x00@\x00N\x00\x05t\x00\x00\x00\x012nnt\x00\x00\x00\x01fn',
    b'C\x00\x00\x00\x00\x00\x01S\xb7\xa8\x00\x00\x00\x00\x01S\xb7\xd8\x00\x03\x04|\xba\x0e\xe0\xc3',
    b'B\x00\x00\x00\x00\x01S\xb88\x00\x03\x04|\xba\x0e\xf1O\x00\x00\x02\xd7',
    b'U\x00\x00@\x00N\x00\x05t\x00\x00\x00\x011t\x00\x00\x00\x01bt\x00\x00\x00\x041.50t\x00\x00\x00\x01tt\x00\x00'
    b'\x00\x162024-01-02 03:04:05+00',
    b'C\x00\x00\x00\x00\x00\x01S\xb88\x00\x00\x00\x00\x01S\xb8h\x00\x03\x04|\xba\x0e\xf1O',
    b'B\x00\x00\x00\x00\x01S\xb9\x00\x00\x03\x04|\xba\x0f\x01\xf0\x00\x00\x02\xd8',
    b'U\x00\x00@\x00K\x00\x05t\x00\x00\x00\x012nnnnN\x00\x05t\x00\x00\x00\x013nnt\x00\x00\x00\x01fn',
    b'C\x00\x00\x00\x00\x00\x01S\xb9\x00\x00\x00\x00\x00\x01S\xb90\x00\x03\x04|\xba\x0f\x01\xf0',
    b'B\x00\x00\x00\x00\x01S\xb9p\x00\x03\x04|\xba\x0f\x06\xe6\x00\x00\x02\xd9',
    b'D\x00\x00@\x00K\x00\x05t\x00\x00\x00\x011nnnn',
    b'C\x00\x00\x00\x00\x00\x01S\xb9p\x00\x00\x00\x00\x01S\xb9\xa0\x00\x03\x04|\xba\x0f\x06\xe6',
    b'B\x00\x00\x00\x00\x01S\xbd\xc8\x00\x03\x04|\xba\x0f\x0cN\x00\x00\x02\xdb',
    b'R\x00\x00@\x00public\x00t\x00d\x00\x06\x01id\x00\x00\x00\x00\x17\xff\xff\xff\xff\x00name\x00\x00\x00\x00\x19'
    b'\xff\xff\xff\xff\x00amount\x00\x00\x00\x06\xa4\x00\n\x00\x06\x00ok\x00\x00\x00\x00\x10\xff\xff\xff\xff\x00at'
    b'\x00\x00\x00\x04\xa0\xff\xff\xff\xff\x00extra\x00\x00\x00\x00\x19\xff\xff\xff\xff',
    b'I\x00\x00@\x00N\x00\x06t\x00\x00\x00\x014t\x00\x00\x00\x01dnnnt\x00\x00\x00\x01x',
    b'C\x00\x00\x00\x00\x00\x01S\xbd\xc8\x00\x00\x00\x00\x01S\xbd\xf8\x00\x03\x04|\xba\x0f\x0cN',
]
TOAST_UPDATE = b'U\x00\x00@\x00N\x00\x03t\x00\x00\x00\x011ut\x00\x00\x00\x012'
"""`UPDATE t SET n=2` of a row whose `big text` (stored EXTERNAL) the update left alone."""
TRUNCATE = b'T\x00\x00\x00\x01\x00\x00\x00@\x00'
TYPES = {(23, -1): "integer", (25, -1): "text", (1700, 655366): "numeric(10,2)", (16, -1): "boolean",
         (1184, -1): "timestamp with time zone"}


def test_messages_decode_to_what_the_server_sent() -> None:
    begin = po.decode(CAPTURED[0])
    assert begin == po.Begin(final_lsn=0x153B7A8, commit_time=begin.commit_time, xid=726)  # type: ignore[union-attr]
    relation = po.decode(CAPTURED[1])
    assert isinstance(relation, po.Relation)
    assert (relation.relid, relation.namespace, relation.name, relation.replica_identity) == (16384, "public", "t", "d")
    assert [(c.name, c.type_oid, c.type_modifier, c.key) for c in relation.columns] == [
        ("id", 23, -1, True), ("name", 25, -1, False), ("amount", 1700, 655366, False), ("ok", 16, -1, False),
        ("at", 1184, -1, False)]
    assert po.decode(CAPTURED[2]) == po.Insert(16384, ("1", "a", "1.50", "t", "2024-01-02 03:04:05+00"))
    assert po.decode(CAPTURED[3]) == po.Insert(16384, ("2", None, None, "f", None))
    commit = po.decode(CAPTURED[4])
    assert isinstance(commit, po.Commit) and (commit.commit_lsn, commit.end_lsn) == (0x153B7A8, 0x153B7D8)
    assert po.decode(CAPTURED[9]) == po.Update(16384, ("2", None, None, None, None), ("3", None, None, "f", None))
    assert po.decode(CAPTURED[12]) == po.Delete(16384, ("1", None, None, None, None))
    assert po.decode(TOAST_UPDATE) == po.Update(16384, None, ("1", po.UNCHANGED, "2"))
    assert po.decode(TRUNCATE) == po.Truncate((16384,), cascade=False, restart_identity=False)


@pytest.mark.parametrize("data", [b"", b"I\x00\x00", b"Z", b"R\x00\x00@\x00public", CAPTURED[2][:-3]])
def test_malformed_messages_are_refused(data: bytes) -> None:
    with pytest.raises(po.DecodeError):
        po.decode(data)


def test_lsn_text_round_trips() -> None:
    assert po.lsn_text(0x16B374D848) == "16/B374D848"
    assert po.parse_lsn("16/B374D848") == 0x16B374D848
    assert po.parse_lsn(po.lsn_text(0x153B7D8)) == 0x153B7D8


def _group(*, deletes: bool = True,
           table: tuple[str, str] = ("public", "t")) -> tuple[list[Transaction], dict[str, str]]:
    types: dict[str, str] = {}
    return group(CAPTURED, table, types, lambda oid, mod: TYPES[oid, mod], deletes=deletes), types


def test_transactions_carry_every_change_in_commit_order() -> None:
    txns, types = _group()
    assert [t.xid for t in txns] == [726, 727, 728, 729, 731]
    assert [t.end_lsn for t in txns] == sorted(t.end_lsn for t in txns)
    changes = [(c.values, c.delete) for t in txns for c in t.changes]
    assert changes == [
        ({"id": "1", "name": "a", "amount": "1.50", "ok": "t", "at": "2024-01-02 03:04:05+00"}, False),
        ({"id": "2", "name": None, "amount": None, "ok": "f", "at": None}, False),
        ({"id": "1", "name": "b", "amount": "1.50", "ok": "t", "at": "2024-01-02 03:04:05+00"}, False),
        ({"id": "2"}, True),  # the key changed: the old key is deleted
        ({"id": "3", "name": None, "amount": None, "ok": "f", "at": None}, False),
        ({"id": "1"}, True),
        ({"id": "4", "name": "d", "amount": None, "ok": None, "at": None, "extra": "x"}, False),
    ]
    assert types["extra"] == "text" and types["amount"] == "numeric(10,2)"  # the ALTER's new relation


def test_append_mode_leaves_deletes_out_and_other_tables_are_ignored() -> None:
    txns, _ = _group(deletes=False)
    assert not any(c.delete for t in txns for c in t.changes)
    assert [len(t.changes) for t in txns] == [2, 1, 1, 0, 1]
    others, _ = _group(table=("public", "other"))
    assert [len(t.changes) for t in others] == [0] * 5 and len(others) == 5  # positions still move on


def test_an_unchanged_toasted_value_is_not_written_as_null() -> None:
    relation = (b'R\x00\x00@\x00public\x00t\x00d\x00\x03\x01id\x00\x00\x00\x00\x17\xff\xff\xff\xff\x00big\x00\x00'
                b'\x00\x00\x19\xff\xff\xff\xff\x00n\x00\x00\x00\x00\x17\xff\xff\xff\xff')
    begin, commit = CAPTURED[5], CAPTURED[7]
    (txn,) = group([begin, relation, TOAST_UPDATE, commit], ("public", "t"), {}, lambda o, m: TYPES[o, m],
                   deletes=True)
    (change,) = txn.changes
    assert "REPLICA IDENTITY FULL" in change.problem
    rows = to_rows(txn.changes, {"id": "integer", "big": "text", "n": "integer"}, "public.t", {"lsn": None})
    assert rows.table.num_rows == 0 and len(rows.rejects) == 1


def test_rows_have_the_catalog_types_and_a_delete_mask() -> None:
    txns, types = _group()
    changes = [c for t in txns for c in t.changes]
    rows = to_rows(changes, types, "public.t", {"lsn": None})
    assert rows.table.column("id").to_pylist() == [1, 2, 1, 2, 3, 1, 4]
    assert str(rows.table.schema.field("amount").type) == "decimal128(10, 2)"
    assert str(rows.table.schema.field("at").type) == "timestamp[us, tz=UTC]"
    assert rows.table.column("ok").to_pylist()[:2] == [True, False]
    assert rows.deletes is not None and np.flatnonzero(rows.deletes).tolist() == [3, 5]
    assert rows.table.column("extra").to_pylist() == [None] * 6 + ["x"]
    snapshot_text = to_rows([Change({"id": "5", "ok": "true"}), Change({"id": "6", "ok": "false"})],
                            {"id": "integer", "ok": "boolean"}, "public.t", None)
    assert snapshot_text.table.column("ok").to_pylist() == [True, False] and snapshot_text.deletes is None


def test_a_value_its_type_cannot_hold_is_a_reject_not_a_failure() -> None:
    rows = to_rows([Change({"id": "1", "amount": "NaN"}), Change({"id": "2", "amount": "2.00"})],
                   {"id": "integer", "amount": "numeric(10,2)"}, "public.t", {"lsn": "0/1"})
    assert rows.table.column("id").to_pylist() == [2]
    (reject,) = rows.rejects
    assert "amount" in reject.reason and reject.position == {"lsn": "0/1"}


def test_the_snapshot_filter_sees_exactly_what_the_snapshot_saw() -> None:
    seen = SnapshotFilter.parse("100:110:103,107", "0/5000")
    assert seen.seen(99, 0x4000) and seen.seen(105, 0x4000)
    assert not seen.seen(103, 0x4000) and not seen.seen(107, 0x4000)  # running when the snapshot was taken
    assert not seen.seen(110, 0x4000) and not seen.seen(120, 0x4000)  # started after it
    assert not seen.seen(99, 0x5001)  # ended after the bound: the snapshot cannot hold it
    assert SnapshotFilter.load(seen.dump()) == seen
    wrapped = SnapshotFilter.parse(f"{(1 << 32) + 5}:{(1 << 32) + 9}:", "0/5000")
    assert wrapped.seen(4, 0x10) and wrapped.seen(0xFFFFFFF0, 0x10) and not wrapped.seen(9, 0x10)


def test_slot_names_and_setup_statements() -> None:
    assert slot_name("Orders-EU.v2") == "conduitd_orders_eu_v2"
    assert len(slot_name("x" * 100)) == 63
    statements = setup_statements("sales", 'od"d', "conduitd_o", have_publication=False, have_slot=False)
    assert statements == [
        'CREATE PUBLICATION "conduitd_o" FOR TABLE "sales"."od""d" '
        "WITH (publish = 'insert, update, delete, truncate')",
        "SELECT pg_create_logical_replication_slot('conduitd_o', 'pgoutput')"]
    assert setup_statements("s", "t", "n", have_publication=True, have_slot=True) == []
