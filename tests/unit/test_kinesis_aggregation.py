"""KPL de-aggregation: aggregates made by the reference library (`aws_kinesis_agg`) unpack to what
was put in and to what the library's own deaggregator and protobuf classes read; plain records
(including ones that start with the magic but fail the digest) are None; a body whose digest
matches but which does not decode is an AggregateError naming the fault."""

from __future__ import annotations

import base64
import hashlib
from typing import Any

import pytest
from aws_kinesis_agg.aggregator import RecordAggregator

# The deaggregator puts its own folder on sys.path, which its generated protobuf module needs.
from aws_kinesis_agg.deaggregator import iter_deaggregate_records, messages_pb2
from google.protobuf.message import DecodeError
from hypothesis import given, settings
from hypothesis import strategies as st

from conduitd.sources.kinesis.aggregation import MAGIC, AggregateError, SubRecord, deaggregate

UserRecord = tuple[str, bytes, str | None]
"""(partition key, data, explicit hash key) as given to the aggregator."""


def aggregate(records: list[UserRecord], max_size: int = 1024 * 1024) -> list[bytes]:
    """The Kinesis records the reference aggregator packs `records` into, in order."""
    aggregator = RecordAggregator(max_size=max_size)
    out: list[bytes] = []
    for partition_key, data, explicit_hash_key in records:
        full = aggregator.add_user_record(partition_key, data, explicit_hash_key)
        if full is not None:
            out.append(full.get_contents()[2])
    last = aggregator.clear_and_get()
    if last is not None:
        out.append(last.get_contents()[2])
    return out


def unpack(record: bytes) -> list[SubRecord]:
    result = deaggregate(record)
    assert result is not None
    return result


def as_user_records(subs: list[SubRecord]) -> list[UserRecord]:
    return [(s.partition_key, s.data, s.explicit_hash_key) for s in subs]


def library_deaggregate(record: bytes) -> list[UserRecord] | None:
    """What the reference library's deaggregator reads from `record`; None when it passes it on as plain."""
    boto3_record = {"Data": record, "PartitionKey": "outer", "SequenceNumber": "1", "ApproximateArrivalTimestamp": 0}
    out: list[UserRecord] = []
    for user in iter_deaggregate_records(boto3_record, data_format="Boto3"):
        kinesis: dict[str, Any] = user["kinesis"]
        if not kinesis.get("aggregated"):
            return None
        out.append((kinesis["partitionKey"], base64.b64decode(kinesis["data"]), kinesis["explicitHashKey"]))
    return out


def protobuf_records(record: bytes) -> list[UserRecord]:
    """The user records of `record` read with the library's generated protobuf classes."""
    message = messages_pb2.AggregatedRecord()
    message.ParseFromString(record[len(MAGIC) : -16])
    return [
        (
            message.partition_key_table[r.partition_key_index],
            r.data,
            (message.explicit_hash_key_table[r.explicit_hash_key_index]
             if r.HasField("explicit_hash_key_index") else None),
        )
        for r in message.records
    ]


def wrap(body: bytes) -> bytes:
    """`body` framed as an aggregate whose digest matches."""
    return MAGIC + body + hashlib.md5(body).digest()


def varint(value: int) -> bytes:
    out = bytearray()
    while True:
        low = value & 0x7F
        value >>= 7
        if value:
            out.append(low | 0x80)
        else:
            out.append(low)
            return bytes(out)


def key(field: int, wire_type: int) -> bytes:
    return varint(field << 3 | wire_type)


def ld(field: int, payload: bytes) -> bytes:
    """A length-delimited field."""
    return key(field, 2) + varint(len(payload)) + payload


def record_msg(pk_index: int | None = 0, data: bytes | None = b"x", ehk_index: int | None = None,
               extra: bytes = b"") -> bytes:
    """An encoded `Record` message (the field 3 of AggregatedRecord, with its key and length)."""
    body = b""
    if pk_index is not None:
        body += key(1, 0) + varint(pk_index)
    if ehk_index is not None:
        body += key(2, 0) + varint(ehk_index)
    if data is not None:
        body += ld(3, data)
    return ld(3, body + extra)


MIXED: list[UserRecord] = [
    ("user-1", b'{"id": 1, "name": "Zo\xc3\xab"}', None),
    ("user-2", bytes(range(256)), None),
    ("user-1", "日本語のテキスト".encode(), None),
    ("ключ-3", b"\x00\x00\xff\xfe", None),
    ("user-2", b"", None),
]
WITH_HASH_KEYS: list[UserRecord] = [
    ("user-1", b"a", "170141183460469231731687303715884105728"),
    ("user-2", b"\x80\x81", "0"),
    ("user-3", "é".encode(), "170141183460469231731687303715884105728"),
    ("user-1", b"", "340282366920938463463374607431768211455"),
]


@pytest.mark.parametrize("records", [MIXED, WITH_HASH_KEYS, [("only", b"one", None)], [("k", b"", None)]],
                         ids=["mixed", "hash-keys", "one", "empty-data"])
def test_round_trip_matches_input_and_the_library(records: list[UserRecord]) -> None:
    [record] = aggregate(records)
    subs = unpack(record)
    assert as_user_records(subs) == records
    assert as_user_records(subs) == library_deaggregate(record)
    assert as_user_records(subs) == protobuf_records(record)


def test_hash_key_absent_on_some_records_stays_absent() -> None:
    # The reference deaggregator gives such a record the table's entry 0; the KCL (and the
    # protobuf field's presence) say it has none.
    records: list[UserRecord] = [("a", b"1", "42"), ("b", b"2", None), ("a", b"3", "7")]
    [record] = aggregate(records)
    assert as_user_records(unpack(record)) == records == protobuf_records(record)
    assert library_deaggregate(record) == [("a", b"1", "42"), ("b", b"2", "42"), ("a", b"3", "7")]


def test_a_thousand_records_in_one_aggregate_and_across_many() -> None:
    records: list[UserRecord] = [(f"pk-{i % 37}", i.to_bytes(4, "big") * (i % 5), None) for i in range(1000)]
    [single] = aggregate(records)
    assert as_user_records(unpack(single)) == records == library_deaggregate(single)

    many = aggregate(records, max_size=1000)
    assert len(many) > 10
    assert [r for record in many for r in as_user_records(unpack(record))] == records


KEYS = st.text(min_size=1, max_size=20)
HASH_KEYS = st.none() | st.integers(min_value=0, max_value=2**128 - 1).map(str)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(KEYS, st.binary(max_size=200), HASH_KEYS), min_size=1, max_size=30))
def test_round_trip_property(records: list[UserRecord]) -> None:
    [record] = aggregate(records)
    subs = unpack(record)
    assert as_user_records(subs) == records == protobuf_records(record)


@pytest.mark.parametrize("data", [
    b"",
    b'{"id": 1}',
    MAGIC,
    MAGIC + b"\x00" * 16,
    MAGIC + hashlib.md5(b"").digest(),  # no protobuf bytes at all: too short, as in the library
    b"\xf3\x89\x9a" + b"\x00" * 40,
], ids=["empty", "json", "magic-only", "magic-and-16", "empty-body", "almost-magic"])
def test_plain_records_are_none(data: bytes) -> None:
    assert deaggregate(data) is None
    assert library_deaggregate(data) is None


def test_magic_with_a_wrong_digest_is_a_plain_record() -> None:
    [record] = aggregate(MIXED)
    flipped_digest = record[:-1] + bytes([record[-1] ^ 1])
    flipped_body = record[:10] + bytes([record[10] ^ 1]) + record[11:]
    for data in (flipped_digest, flipped_body, record[:-1], record + b"\x00"):
        assert deaggregate(data) is None
        assert library_deaggregate(data) is None


def test_unknown_fields_of_every_wire_type_are_skipped() -> None:
    unknown = (
        key(9, 0) + varint(2**64 - 1)
        + key(10, 1) + b"\x01" * 8
        + ld(11, b"\xff\xfe not utf-8")
        + key(12, 5) + b"\x02" * 4
        + key(13, 3) + key(1, 0) + varint(5) + key(14, 3) + ld(3, b"deep") + key(14, 4) + key(13, 4)
    )
    # A known field number with an unexpected wire type is an unknown field too.
    wrong_wire_type_top = key(1, 0) + varint(7) + key(3, 5) + b"\x00" * 4
    wrong_wire_type_record = key(3, 0) + varint(1) + key(1, 2) + varint(0) + key(2, 1) + b"\x00" * 8
    body = (
        unknown
        + record_msg(pk_index=1, data=b"first", ehk_index=0, extra=unknown + wrong_wire_type_record)
        + ld(1, b"p0") + unknown + wrong_wire_type_top + ld(1, b"p1")  # tables may follow the records
        + ld(2, b"h0")
        + record_msg(pk_index=0, data=b"second", extra=unknown + ld(4, ld(1, b"tag") + ld(2, b"v")))
    )
    expected: list[UserRecord] = [("p1", b"first", "h0"), ("p0", b"second", None)]
    assert as_user_records(unpack(wrap(body))) == expected == protobuf_records(wrap(body))


def test_a_scalar_given_twice_keeps_the_last_value() -> None:
    body = ld(1, b"p0") + ld(1, b"p1") + ld(3, key(1, 0) + varint(0) + ld(3, b"old") + key(1, 0) + varint(1)
                                               + ld(3, b"new"))
    assert as_user_records(unpack(wrap(body))) == [("p1", b"new", None)] == protobuf_records(wrap(body))


def test_an_aggregate_without_records_is_empty() -> None:
    assert deaggregate(wrap(ld(1, b"unused"))) == []


@pytest.mark.parametrize(("body", "message"), [
    (ld(1, b"p") + record_msg(pk_index=1), "partition_key_index 1, but the partition_key table has 1 entries"),
    (ld(1, b"p") + record_msg(ehk_index=0), "explicit_hash_key_index 0, but the explicit_hash_key table has 0"),
    (ld(1, b"p") + record_msg(pk_index=None), "record 0 has no partition_key_index"),
    (ld(1, b"p") + record_msg() + record_msg(data=None), "record 1 has no data"),
    (ld(1, b"p") + record_msg()[:-1], "needs"),
    (ld(1, b"p") + key(3, 2) + varint(1000) + b"short", "needs 1000 bytes"),
    (ld(1, b"p") + key(3, 2), "truncated varint"),
    (ld(1, b"p") + key(9, 0) + b"\x80", "truncated varint"),
    (ld(1, b"p") + key(9, 0) + b"\xff" * 10 + b"\x01", "longer than 10 bytes"),
    (ld(1, b"p") + key(9, 0) + b"\xff" * 9 + b"\x7f", "exceeds 64 bits"),
    (ld(1, b"p") + key(9, 1) + b"\x00" * 7, "needs 8 bytes"),
    (ld(1, b"p") + key(9, 5) + b"\x00" * 3, "needs 4 bytes"),
    (ld(1, b"p") + key(9, 6), "invalid wire type 6"),
    (ld(1, b"p") + key(9, 7), "invalid wire type 7"),
    (ld(1, b"p") + key(0, 0) + varint(1), "invalid field number 0"),
    (ld(1, b"p") + key(9, 4), "unmatched end of group 9"),
    (ld(1, b"p") + key(9, 3) + key(1, 0) + varint(1) + key(8, 4), "unmatched end of group 8"),
    (ld(1, b"p") + key(9, 3) + key(1, 0) + varint(1), "group 9 is not closed"),
    (ld(1, b"\xff\xfe") + record_msg(), "partition_key_table[0] at byte 2 is not UTF-8"),
    (ld(1, b"p") + ld(2, b"\xc3") + record_msg(), "explicit_hash_key_table[0]"),
    (ld(1, b"p") + ld(3, key(9, 7)), "invalid wire type 7"),
], ids=lambda value: value if isinstance(value, str) else None)
def test_matching_digest_with_a_malformed_body_is_an_aggregate_error(body: bytes, message: str) -> None:
    with pytest.raises(AggregateError, match="KPL aggregate") as raised:
        deaggregate(wrap(body))
    assert message in str(raised.value)
    assert isinstance(raised.value, ValueError)


def test_corrupting_a_real_aggregate_and_fixing_its_digest_is_an_error() -> None:
    [record] = aggregate(MIXED)
    body = record[len(MAGIC) : -16]
    with pytest.raises(AggregateError):
        deaggregate(wrap(body[:-3]))  # the last record's data cut short


SMALL = st.integers(min_value=0, max_value=2)
GOOD_FIELDS = st.one_of(
    st.builds(lambda text: ld(1, text), st.sampled_from([b"p0", b"p1", b""])),
    st.builds(lambda text: ld(2, text), st.sampled_from([b"h0", b"1"])),
    st.builds(lambda pk, ehk, data: record_msg(pk, data, ehk), SMALL, st.none() | SMALL, st.binary(max_size=4)),
    st.builds(lambda field, value: key(field, 0) + varint(value), st.integers(4, 20), st.integers(0, 2**64 - 1)),
    st.builds(lambda field, inner: key(field, 3) + inner + key(field, 4), st.integers(1, 20), st.binary(max_size=0)),
)
BAD_FIELDS = st.one_of(
    st.just(ld(1, b"\xff")),
    st.builds(lambda pk, ehk, data, extra: record_msg(pk, data, ehk, extra),
              st.none() | SMALL, st.none() | SMALL, st.none() | st.binary(max_size=4), st.binary(max_size=3)),
    st.builds(lambda field, wire_type: key(field, wire_type), st.integers(1, 20), st.integers(0, 7)),
    st.binary(min_size=1, max_size=6),
)
TABLES = ld(1, b"p0") + ld(1, b"p1") + ld(1, b"p2") + ld(2, b"h0") + ld(2, b"h1") + ld(2, b"h2")


def body_of(tables: bool, good: list[bytes], bad: bytes | None, at: int) -> bytes:
    """Fields `good`, with `bad` among them at `at` if given, after the key tables if `tables`."""
    fields = list(good)
    if bad is not None:
        fields.insert(at % (len(fields) + 1), bad)
    return (TABLES if tables else b"") + b"".join(fields)


BODIES = st.builds(body_of, st.booleans(), st.lists(GOOD_FIELDS, max_size=8), st.none() | BAD_FIELDS, st.integers(0, 8))
"""AggregatedRecord bodies, well formed or with one fault: a bad field, a dangling reference, raw bytes."""


@settings(max_examples=400, deadline=None)
@given(BODIES)
def test_any_body_with_a_matching_digest_decodes_like_protobuf_or_is_an_aggregate_error(body: bytes) -> None:
    if not body:
        assert deaggregate(wrap(body)) is None
        return
    try:
        ours: list[UserRecord] | AggregateError = as_user_records(unpack(wrap(body)))
    except AggregateError as exc:
        ours = exc
    try:
        theirs: list[UserRecord] | Exception = protobuf_records(wrap(body))
    except (DecodeError, IndexError) as exc:
        theirs = exc
    if isinstance(ours, AggregateError):
        # protobuf refuses it too, or lets through what this decoder checks more strictly: the
        # Python protobuf runtime checks neither that proto2 strings are UTF-8 nor that a nested
        # message has its required fields.
        stricter = ("not UTF-8", "has no partition_key_index", "has no data")
        assert isinstance(theirs, Exception) or any(s in str(ours) for s in stricter), (body, ours, theirs)
    else:
        assert ours == theirs, body
