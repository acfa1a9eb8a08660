"""Field names from data, through the real CLI into PostgreSQL and SQLite (issue 8, items 4, 6, 7
and 13): a field named like conduitd's internal state is plain data; a name the destination cannot
take (a system column's, empty, NUL, too long, repeated) or a column past the table's limit sends
the records with a value there to the DLQ with the reason, and the rest of the pipeline goes on,
run after run; `validate` reports such columns (exit 4)."""

from __future__ import annotations

import asyncio
import csv
import json
import string
import uuid
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.helpers.daemon import conduitd, write_config
from tests.helpers.destinations import Db, postgres, sqlite

SYSTEM = ["xmin", "xmax", "cmin", "cmax", "ctid", "tableoid"]
ASCII_LOWER = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)


@pytest.fixture(params=["postgres", "sqlite"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Db:
    return postgres(request) if request.param == "postgres" else sqlite(tmp_path)


def config_for(tmp_path: Path, db: Db, pattern: str = "*.jsonl", **pipeline: Any) -> Path:
    (tmp_path / "in").mkdir(exist_ok=True)
    return write_config(tmp_path / "conduitd.yaml", {
        "service": {"once_retry_timeout": "2s"},
        "sources": [{"name": "files", "type": "file", "path": str(tmp_path / "in" / pattern)}],
        "destinations": [db.destination],
        "resources": [{"name": "events", "source": "files", "destination": "db",
                       "batch": {"max_rows": 100000}, **pipeline}],
    })


def append(tmp_path: Path, *records: dict[str, Any], name: str = "a.jsonl") -> None:
    with (tmp_path / "in" / name).open("a", encoding="utf-8") as handle:
        handle.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in records)


def once(config: Path) -> str:
    result = conduitd("--once", "-c", str(config))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    return result.stderr


def ids(db: Db) -> list[int]:
    return [r["id"] for r in db.table("events")]


def dlq_ids(db: Db) -> list[int]:
    return sorted(r["payload"]["id"] for r in db.dlq("events"))


# -- item 4 --------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["append", "upsert"])
def test_fields_named_like_internal_state_are_stored_and_delete_nothing(tmp_path: Path, db: Db, mode: str) -> None:
    key = {"mode": "upsert", "unique_key": ["id"]} if mode == "upsert" else {}
    config = config_for(tmp_path, db, **key)
    append(tmp_path, {"id": 1, "v": "a"}, {"id": 2, "v": "b"})
    once(config)
    append(tmp_path, {"id": 1, "v": "c", "__conduitd_deleted": True, "__conduitd_row": 7},
           {"id": 3, "__conduitd_deleted": False})
    once(config)
    columns = db.columns("events")
    assert "__conduitd_deleted" in columns and "__conduitd_row" in columns
    rows = [(r["id"], r["v"], r["__conduitd_deleted"], r["__conduitd_row"]) for r in db.table("events", "id, v")]
    yes, no = (True, False) if db.kind == "postgres" else ("true", "false")  # SQLite keeps booleans as read
    if mode == "upsert":
        assert rows == [(1, "c", yes, 7), (2, "b", None, None), (3, None, no, None)]
    else:
        assert rows == [(1, "a", None, None), (1, "c", yes, 7), (2, "b", None, None), (3, None, no, None)]
    assert db.dlq("events") == []


# -- item 6 --------------------------------------------------------------------------------------


def refused_by(db: Db) -> dict[str, str]:
    """Hostile name -> a words of the reason its rows get in the DLQ (the names the store takes
    are absent)."""
    if db.kind == "postgres":
        return {**{n: f"column name '{n}' is a PostgreSQL system column" for n in SYSTEM},
                "": "is empty", "a\x00b": "NUL character", "c" * 70: "longer than the 63 bytes"}
    return {"a\x00b": "NUL character"}


def test_names_the_destination_cannot_take_hold_only_their_rows_run_after_run(tmp_path: Path, db: Db) -> None:
    names = [*SYSTEM, "", "a\x00b", "c" * 70, "rowid", "oid", "_rowid_"]
    config = config_for(tmp_path, db)
    for run in range(2):  # the second run (a restart) meets the same names in a live table
        base = 100 * run
        append(tmp_path, {"id": base, "v": "plain"},
               *({"id": base + 1 + i, name: i} for i, name in enumerate(names)),
               *({"id": base + 50 + i, name: None} for i, name in enumerate(names)))
        once(config)
    refused = refused_by(db)
    taken = [n for n in names if n not in refused]
    assert list(db.columns("events")) == ["id", "v", *taken]
    sent = [100 * run + k for run in range(2) for k in [0, *range(1, 1 + len(names)), *range(50, 50 + len(names))]]
    expected_dlq = sorted(100 * run + 1 + i for run in range(2) for i, n in enumerate(names) if n in refused)
    assert dlq_ids(db) == expected_dlq
    assert ids(db) == sorted(set(sent) - set(expected_dlq))
    for row in db.dlq("events"):
        name = row["column_name"].replace("\\u0000", "\x00")  # PostgreSQL text holds no NUL: escaped
        assert refused[name] in row["reason"] and row["rule"] == "schema"
        fields = {k: v for k, v in row["payload"].items() if v is not None}
        assert fields == {"id": row["payload"]["id"], name: names.index(name)}
    for row in db.table("events"):  # what was written is exactly what was read
        if 1 <= row["id"] % 100 < 50:
            name = names[row["id"] % 100 - 1]
            assert row[name] == names.index(name)


def test_a_csv_header_with_a_repeated_name_dead_letters_its_rows_and_other_files_load(
        tmp_path: Path, db: Db) -> None:
    config = config_for(tmp_path, db, pattern="*.csv")
    (tmp_path / "in" / "a.csv").write_text("id,name,name\n1,a,b\n2,c,\n")
    (tmp_path / "in" / "b.csv").write_text("id,name,\n3,d,e\n4,f,\n")
    once(config)
    once(config)  # and again: nothing is stuck
    dlq = db.dlq("events")
    ambiguous = "field name 'name' appears 2 times in the record: its value is ambiguous"
    repeated = [r for r in dlq if r["reason"] == ambiguous]
    assert [r["payload"]["id"] for r in repeated] == [1, 2]
    if db.kind == "postgres":  # an empty header cell names an empty column: PostgreSQL cannot take it
        assert ids(db) == [4] and [r["payload"]["id"] for r in dlq if r not in repeated] == [3]
        assert list(db.columns("events")) == ["id", "name"]
    else:
        assert ids(db) == [3, 4] and len(dlq) == 2
        assert [r[""] for r in db.table("events")] == ["e", None]


def test_a_parquet_file_with_two_columns_of_one_name_is_dead_lettered(tmp_path: Path, db: Db) -> None:
    config = config_for(tmp_path, db, pattern="*.parquet")
    pq.write_table(pa.Table.from_arrays([pa.array([1, 2]), pa.array(["x", "y"]), pa.array(["z", None])],
                                        names=["id", "v", "v"]), tmp_path / "in" / "a.parquet")
    pq.write_table(pa.table({"id": [3], "v": ["w"]}), tmp_path / "in" / "b.parquet")
    once(config)
    assert ids(db) == [3] and dlq_ids(db) == [1, 2]
    assert {r["reason"] for r in db.dlq("events")} == {"field name 'v' appears 2 times in the record: its value "
                                                       "is ambiguous"}


def test_a_json_record_with_a_repeated_key_is_dead_lettered_by_the_reader(tmp_path: Path, db: Db) -> None:
    config = config_for(tmp_path, db)
    (tmp_path / "in" / "a.jsonl").write_text('{"id": 1, "a": 1, "a": 2}\n{"id": 2, "a": 3}\n')
    once(config)
    assert ids(db) == [2]
    [dead] = db.rows(f"SELECT rule, payload FROM {db.name('events_dlq')}")
    assert dead == {"rule": "decode", "payload": '{"id": 1, "a": 1, "a": 2}'}  # the line as it was


def test_a_name_sqlite_takes_for_another_column_is_held(tmp_path: Path) -> None:
    db = sqlite(tmp_path)
    config = config_for(tmp_path, db)
    append(tmp_path, {"id": 1, "Name": "a"})
    once(config)
    append(tmp_path, {"id": 2, "name": "b"}, {"id": 3, "Name": "c", "name": None})
    once(config)
    assert [(r["id"], r["Name"]) for r in db.table("events")] == [(1, "a"), (3, "c")]
    assert dlq_ids(db) == [2] and "one column to the destination" in db.dlq("events")[0]["reason"]


# -- item 7 --------------------------------------------------------------------------------------


def test_a_record_past_the_column_limit_is_dead_lettered_and_the_rest_goes_on(tmp_path: Path, db: Db) -> None:
    limit = 1600 if db.kind == "postgres" else 2000
    config = config_for(tmp_path, db)
    append(tmp_path, {"id": 1, "v": "x"})
    once(config)
    wide = {"id": 2, **{f"c{i}": "y" for i in range(limit + 10)}}
    append(tmp_path, wide, {"id": 3, "v": "z"}, {"id": 4, "c0": "fits"})
    once(config)
    append(tmp_path, {"id": 5, f"c{limit + 5}": "still no room"}, {"id": 6, "v": "after"})
    once(config)  # a restart meets the full table: the pipeline still goes on
    assert len(db.columns("events")) == limit
    assert ids(db) == [1, 3, 4, 6]
    dlq = db.dlq("events")
    assert [r["payload"]["id"] for r in dlq] == [2, 5]
    assert all(r["reason"] == f"the table would have more than {limit} columns" for r in dlq)
    assert {k: v for k, v in dlq[0]["payload"].items() if v is not None} == wide  # the whole record


def test_postgres_counts_dropped_columns_against_its_limit(tmp_path: Path, request: pytest.FixtureRequest) -> None:
    db = postgres(request)
    columns = ", ".join(f"c{i} bigint" for i in range(1598))
    drops = ", ".join(f"DROP COLUMN c{i}" for i in range(5))
    db.execute(f"CREATE TABLE {db.name('events')} (id bigint, {columns}); ALTER TABLE {db.name('events')} {drops}")
    config = config_for(tmp_path, db)
    append(tmp_path, {"id": 1, "n1": 1}, {"id": 2, "n2": 2}, {"id": 3, "c9": 3})
    once(config)  # 1,594 columns and 5 dropped ones: room for one more
    assert ids(db) == [1, 3] and dlq_ids(db) == [2]
    assert db.dlq("events")[0]["reason"] == "the table would have more than 1600 columns"


def test_a_record_too_wide_for_a_postgres_row_is_dead_lettered(tmp_path: Path,
                                                               request: pytest.FixtureRequest) -> None:
    db = postgres(request)
    columns = ", ".join(f"c{i} bigint" for i in range(1200))
    db.execute(f"CREATE TABLE {db.name('events')} (id bigint, {columns})")
    config = config_for(tmp_path, db)
    append(tmp_path, {"id": 1, "c0": 0})
    once(config)
    append(tmp_path, {"id": 2, **{f"c{i}": i for i in range(1200)}}, {"id": 3, "c5": 5})
    once(config)  # 1,200 bigints are 9,600 bytes: more than a PostgreSQL row (a page) holds
    assert ids(db) == [1, 3] and dlq_ids(db) == [2]
    assert db.dlq("events")[0]["reason"].startswith("PostgreSQL 54000")  # program_limit_exceeded


# -- item 13 -------------------------------------------------------------------------------------


@pytest.mark.parametrize("table_exists", [False, True])
def test_validate_reports_a_column_the_destination_cannot_take(tmp_path: Path, db: Db, table_exists: bool) -> None:
    config = config_for(tmp_path, db)
    if table_exists:
        append(tmp_path, {"id": 1})
        once(config)
    append(tmp_path, {"id": 2, "xmin": 1, "a\x00b": 2, "ok": 3})
    result = conduitd("validate", "-c", str(config), "--json")
    assert result.returncode == 4, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    problems = {c["check"]: c["detail"] for c in json.loads(result.stdout) if c["status"] == "incompatible"}
    expected = {"schema: 'a\\x00b'"} | ({"schema: 'xmin'"} if db.kind == "postgres" else set())
    assert set(problems) == expected
    assert all("go to the DLQ" in detail for detail in problems.values())


# -- generated names -----------------------------------------------------------------------------

NAMES = st.one_of(
    st.sampled_from([*SYSTEM, "", "\x00", '"', "'", 'a"; DROP TABLE x; --', "ID", "Id", "oid", "rowid", "é", "É",
                     "__conduitd_deleted", "__conduitd_row", "x" * 63, "é" * 32, "y" * 64, "z" * 200]),
    st.text(alphabet=st.characters(codec="utf-8"), max_size=6),
    st.text(alphabet=string.ascii_letters[:4] + "\x00\"' ", max_size=3),
)


@settings(max_examples=16)
@given(data=st.data())
def test_every_record_is_in_the_table_or_the_dlq_whatever_its_field_names(
        data: st.DataObject, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> None:
    """JSON lines (names differ, values may be null) or a CSV file (a header may repeat a name or
    leave it empty; every cell has a value), into PostgreSQL or SQLite: exit 0, each record in the
    table or the DLQ exactly once, with its values; the table has exactly the columns the store
    can take."""
    kind = data.draw(st.sampled_from(["postgres", "sqlite"]))
    csv_file = data.draw(st.booleans())
    tmp_path = tmp_path_factory.mktemp("names")
    db = postgres(request) if kind == "postgres" else sqlite(tmp_path)
    table = f"t{uuid.uuid4().hex[:8]}"  # the PostgreSQL schema is the test's: a table per example
    config = config_for(tmp_path, db, "*.csv" if csv_file else "*.jsonl", table=table)
    records: list[dict[str, Any]] = []
    if csv_file:  # one line per record: no line break in a header cell
        header = ["id", *data.draw(st.lists(NAMES.filter(lambda n: n != "id" and not {"\r", "\n"} & set(n)),
                                            min_size=1, max_size=5))]
        lines = [[i, *data.draw(st.lists(st.integers(0, 99), min_size=len(header) - 1, max_size=len(header) - 1))]
                 for i in range(data.draw(st.integers(1, 5)))]
        with (tmp_path / "in" / "a.csv").open("w", encoding="utf-8", newline="") as handle:
            csv.writer(handle, lineterminator="\n").writerows([header, *lines])
        names = header
        records = [dict(zip(header, line, strict=True)) for line in lines]
    else:
        names = ["id", *data.draw(st.lists(NAMES.filter(lambda n: n != "id"), min_size=1, max_size=6))]
        for i in range(data.draw(st.integers(1, 6))):
            fields = data.draw(st.lists(st.sampled_from(names[1:]), max_size=4))
            records.append({"id": i, **{n: data.draw(st.one_of(st.none(), st.integers(0, 99))) for n in fields}})
        append(tmp_path, *records)
    once(config)
    exists = table in db.tables()
    written = {int(r["id"]): r for r in db.table(table)} if exists else {}
    dead = db.rows(f"SELECT payload, reason FROM {db.name(table + '_dlq')}")
    dead_ids = [int(json.loads(r["payload"])["id"]) for r in dead]
    assert sorted([*written, *dead_ids]) == list(range(len(records)))  # each record exactly once
    assert all(r["reason"] for r in dead)
    for record in records:
        if record["id"] in written:  # every field with a value is in its column, exactly
            row = written[record["id"]]
            assert {n: str(v) for n, v in record.items() if v is not None} == {n: str(v) for n, v in row.items()
                                                                               if v is not None}
    seen = list(dict.fromkeys(n for r in records for n in r)) if not csv_file else names
    repeated = len(set(names)) < len(names)
    expected, keys = [], set()
    for name in seen:
        key = name.translate(ASCII_LOWER) if kind == "sqlite" else name  # SQLite ignores ASCII case
        if (pg_takes if kind == "postgres" else sqlite_takes)(name) and key not in keys:
            expected.append(name)
            keys.add(key)
    if csv_file:  # every cell has a value: a name the store cannot take holds every record
        assert len(written) == (0 if repeated or expected != names else len(records))
    if not (csv_file and repeated):  # a repeated name: every record is dead-lettered, no table made
        assert set(db.columns(table)) == set(expected)


def pg_takes(name: str) -> bool:
    return 0 < len(name.encode()) <= 63 and "\x00" not in name and name not in SYSTEM


def sqlite_takes(name: str) -> bool:
    return "\x00" not in name


# -- item 4 through Kafka: tombstones still delete, a field of the marker's old name does not ----


@pytest.mark.parametrize("db", ["postgres", "sqlite"], indirect=True)
def test_kafka_tombstones_delete_and_a_marker_named_field_is_data(tmp_path: Path, db: Db, kafka_bootstrap: str) -> None:
    from tests.helpers.kafka import Record, create_topic, json_record, kafka_source, new_topic_name, produce

    topic = new_topic_name("marker")
    asyncio.run(create_topic(kafka_bootstrap, topic, 1))
    path = write_config(tmp_path / "c.yaml", {
        "service": {"once_retry_timeout": "20s"},
        "sources": [kafka_source(kafka_bootstrap, topic, f"g-{topic}")],
        "destinations": [db.destination],
        "resources": [{"name": "events", "source": "k", "destination": "db", "mode": "upsert", "unique_key": ["id"],
                       "deletes": {"tombstone": True}}],
    })
    asyncio.run(produce(kafka_bootstrap, topic, [json_record({"id": i, "v": f"v{i}"}, key=i, partition=0)
                                                 for i in range(4)]))
    once(path)
    asyncio.run(produce(kafka_bootstrap, topic, [
        json_record({"id": 0, "v": "kept", "__conduitd_deleted": True}, key=0, partition=0),
        Record(None, b"1", 0),                          # a tombstone: deletes id 1
        json_record({"id": 2, "__conduitd_deleted": True, "__conduitd_row": 9}, key=2, partition=0),
        Record(None, b'{"id": 3}', 0),                  # a tombstone with a JSON key: deletes id 3
        json_record({"id": 4, "v": "new"}, key=4, partition=0),
    ]))
    once(path)
    rows = [(r["id"], r["v"], None if r["__conduitd_deleted"] is None else bool(r["__conduitd_deleted"]),
             r["__conduitd_row"]) for r in db.table("events")]
    # An upsert sets every column of its batch: id 2 had no `v` there.
    assert rows == [(0, "kept", True, None), (2, None, True, 9), (4, "new", None, None)]
    assert db.dlq("events") == []
