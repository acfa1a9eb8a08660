"""Hostile and migrated records through the real CLI (`conduitd run --once`) into PostgreSQL and
SQLite, checked row by row: CSV values reach text columns exactly as written, a row that cannot
be read goes to the DLQ alone with its reason and its own position, JSON of any depth or size is
loaded or dead-lettered with the reason, and the run exits 0 without a traceback."""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest

from conduitd.config import CSV_NULL_VALUES
from conduitd.core.nesting import MAX_DEPTH
from tests.helpers.daemon import conduitd, write_config
from tests.helpers.destinations import Db, postgres, sqlite


@pytest.fixture(params=["postgres", "sqlite"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Db:
    return postgres(request) if request.param == "postgres" else sqlite(tmp_path)


def run_once(tmp_path: Path, db: Db, pattern: str, **source: Any) -> None:
    config = write_config(tmp_path / "conduitd.yaml", {
        "sources": [{"name": "files", "type": "file", "path": str(tmp_path / "in" / pattern), **source}],
        "destinations": [db.destination],
        "resources": [{"name": "people", "source": "files", "destination": "db", "table": "people"}],
    })
    result = conduitd("run", "--once", "-c", str(config))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Traceback" not in result.stdout + result.stderr, result.stderr[-3000:]


def write(tmp_path: Path, name: str, data: bytes) -> Path:
    (tmp_path / "in").mkdir(exist_ok=True)
    path = tmp_path / "in" / name
    path.write_bytes(data)
    return path


def dlq(db: Db) -> list[dict[str, Any]]:
    rows = db.rows(f"SELECT reason, position, payload FROM {db.name('people_dlq')} ORDER BY id")
    return [{**r, "offset": json.loads(r["position"])["offset"]} for r in rows]


def line_ends(data: bytes) -> list[int]:
    ends, total = [], 0
    for line in data.splitlines(keepends=True):
        total += len(line)
        ends.append(total)
    return ends


def test_csv_values_reach_existing_text_and_integer_columns_as_written(tmp_path: Path, db: Db) -> None:
    """Leading zeros were stripped even into a text column: two phone numbers became one."""
    integer = "bigint" if db.kind == "postgres" else "INTEGER"
    db.execute(f"CREATE TABLE {db.name('people')} (id {integer}, zip text, phone text, n {integer})")
    data = b"id,zip,phone,n\n1,00501,0155512,007\n2,501,155512,7\n3,+3, 7,8\n4,1.50,1e3,9\n"
    write(tmp_path, "a.csv", data)
    run_once(tmp_path, db, "*.csv")
    assert [(r["id"], r["zip"], r["phone"], r["n"]) for r in db.table("people")] == [
        (1, "00501", "0155512", 7), (2, "501", "155512", 7), (3, "+3", " 7", 8), (4, "1.50", "1e3", 9)]


def test_a_csv_row_that_cannot_be_read_goes_alone_to_the_dlq_at_its_own_position(tmp_path: Path, db: Db) -> None:
    """One invalid UTF-8 row made the whole column binary; ragged rows all carried the block's end."""
    lines = [b"id,name,zip", b"1,caf\xc3\xa9,00501", b"2,caf\xe9,00502", b"3,too,many,fields", b"4,few",
             b'5,"open,00505', b"6,plain,00506", b"7,\xff\xfe,00507", b"8,last,00508"]
    data = b"\n".join(lines) + b"\n"
    path = write(tmp_path, "a.csv", data)
    run_once(tmp_path, db, "*.csv")
    assert [(r["id"], r["name"], r["zip"]) for r in db.table("people")] == [
        (1, "café", "00501"), (6, "plain", "00506"), (8, "last", "00508")]
    assert db.columns("people")["name"][0].lower() == "text"
    rejected = dlq(db)
    ends = line_ends(data)
    assert [r["offset"] for r in rejected] == [ends[i] for i in (2, 3, 4, 5, 7)]
    with path.open("rb") as handle:  # each position is just after its own line
        for entry, number in zip(rejected, (2, 3, 4, 5, 7), strict=True):
            handle.seek(entry["offset"])
            assert handle.readline() == lines[number + 1] + b"\n"
    assert "UTF-8" in rejected[0]["reason"] and rejected[0]["payload"] == "2,caf\\xe9,00502"
    assert "wrong number of fields" in rejected[1]["reason"] and "wrong number of fields" in rejected[2]["reason"]
    assert "quoted" in rejected[3]["reason"]
    assert rejected[4]["payload"] == "7,\\xff\\xfe,00507"


def test_a_latin1_csv_is_read_with_its_encoding(tmp_path: Path, db: Db) -> None:
    write(tmp_path, "a.csv", "id,name\n1,café\n2,Müller\n3,½\n".encode("latin-1"))
    run_once(tmp_path, db, "*.csv", encoding="latin-1")
    assert [(r["id"], r["name"]) for r in db.table("people")] == [(1, "café"), (2, "Müller"), (3, "½")]
    assert db.columns("people")["name"][0].lower() == "text"


def nested(depth: int) -> str:
    """A record `depth` levels deep, objects and arrays alternating below it."""
    text = "1"
    for level in range(depth - 1):
        text = '{"k": ' + text + "}" if level % 2 else "[" + text + "]"
    return text


def test_json_of_any_depth_or_size_is_loaded_or_dead_lettered_with_the_reason(tmp_path: Path, db: Db) -> None:
    """~330 levels gave RecursionError, 100,000 crashed pyarrow, a line over ~1 MiB was 'cannot be
    represented in Arrow'."""
    limit = 2 << 20
    records = [
        (1, '{"id": 1, "v": ' + nested(MAX_DEPTH - 1) + "}", None),
        (2, '{"id": 2, "v": ' + nested(MAX_DEPTH + 1) + "}", f"nested deeper than {MAX_DEPTH} levels"),
        (3, '{"id": 3, "v": ' + nested(330) + "}", f"nested deeper than {MAX_DEPTH} levels"),
        (4, '{"id": 4, "v": ' + nested(100_000) + "}", f"nested deeper than {MAX_DEPTH} levels"),
        (5, orjson.dumps({"id": 5, "v": "x" * (3 << 19)}).decode(), None),  # 1.5 MiB
        (6, orjson.dumps({"id": 6, "v": "y" * (3 << 20)}).decode(), "over max_record_bytes"),
        (7, '{"id": 7, "v": [1, "x"]}', "field /v/[] mixes number and string"),
        (8, '{"id": 8, "v": "plain"}', None),
    ]
    data = b"".join(text.encode() + b"\n" for _, text, _ in records)
    write(tmp_path, "a.jsonl", data)
    run_once(tmp_path, db, "*.jsonl", max_record_bytes=limit)
    loaded = {r["id"]: r["v"] for r in db.table("people")}
    assert sorted(loaded) == [i for i, _, reason in records if reason is None]
    old = sys.getrecursionlimit()
    sys.setrecursionlimit(10_000)
    try:
        for number, text, reason in records:
            if reason is None:
                value = loaded[number]
                assert (json.loads(value) if isinstance(value, str) and value.startswith(("[", "{")) else value) \
                    == json.loads(text)["v"]
    finally:
        sys.setrecursionlimit(old)
    rejected = dlq(db)
    ends = line_ends(data)
    expected = [(ends[i], reason) for i, (_, _, reason) in enumerate(records) if reason is not None]
    assert [r["offset"] for r in rejected] == [end for end, _ in expected]
    for entry, (_, reason) in zip(rejected, expected, strict=True):
        assert reason in entry["reason"]
    assert rejected[3]["reason"] == f"record of {len(records[5][1])} bytes is over max_record_bytes ({limit})"


def hostile_cell(rng: random.Random) -> tuple[str, bool]:
    """A CSV value as migrating users have them (text, quoted?)."""
    kind = rng.randrange(6)
    if kind == 0:
        return "0" * rng.randrange(4) + str(rng.randrange(10**6)), False
    if kind == 1:
        return rng.choice(["+3", "-0", "-12", " 7", "7 ", " ", "1.50", "1e3", "0.1", "1.5", "NaN", "true",
                           "TRUE"]), False
    if kind == 2:
        return "".join(rng.choice('aé ß漢🙂\t",\\\'xy0') for _ in range(rng.randrange(1, 8))), rng.random() < 0.5
    if kind == 3:
        return "", rng.random() < 0.5  # unquoted: NULL; quoted: the empty string
    if kind == 4:
        return rng.choice(["2026-01-31", "2026-01-31 10:00:00", "NA", "null", "None"]), False
    return str(rng.randrange(-(10**12), 10**12)), False


def test_generated_csv_cells_reach_text_columns_byte_identical(tmp_path: Path, db: Db) -> None:
    """Every value lands in the text column exactly as written (an unquoted null token as null), or
    its row in the DLQ at its own position; every row once."""
    rng = random.Random(8)
    integer = "bigint" if db.kind == "postgres" else "INTEGER"
    db.execute(f"CREATE TABLE {db.name('people')} (id {integer}, a text, b text)")
    lines, expected, bad = [b"id,a,b"], {}, []
    for index in range(400):
        cells = [hostile_cell(rng) for _ in range(2)]
        fields = [str(index)] + ['"' + v.replace('"', '""') + '"' if q or any(c in v for c in ',"') else v
                                 for v, q in cells]
        fate = rng.choice(["ok"] * 8 + ["invalid", "ragged"])
        line = ",".join(fields + (["extra"] if fate == "ragged" else [])).encode()
        if fate == "invalid":
            line = line[:-1] + b"\xff" + line[-1:] if len(line) > 1 else line + b"\xff"
        if fate == "ok":
            # unquoted null tokens ("", NULL, N/A, NaN: the file source's default null_values) are null
            expected[index] = tuple(None if v in CSV_NULL_VALUES and not (q or any(c in v for c in ',"')) else v
                                    for v, q in cells)
        else:
            bad.append(len(lines))
        lines.append(line)
    data = b"\n".join(lines) + b"\n"
    write(tmp_path, "a.csv", data)
    run_once(tmp_path, db, "*.csv")
    assert {r["id"]: (r["a"], r["b"]) for r in db.table("people")} == expected
    ends = line_ends(data)
    assert [r["offset"] for r in dlq(db)] == [ends[i] for i in bad]
