"""Data-quality rules and the DLQ through the real CLI, on PostgreSQL and SQLite: which rows reach
the table, which reach `<table>_dlq` (with rule, column, value and the original record), the exit
code 3 of `action: fail`, `dlq list` / `dlq replay` (exactly once), and the run manifest."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.daemon import conduitd, write_config
from tests.helpers.destinations import Db, postgres, sqlite


@pytest.fixture(params=["postgres", "sqlite"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Db:
    return postgres(request) if request.param == "postgres" else sqlite(tmp_path)


def offsets(positions: dict[str, Any]) -> dict[str, int]:
    """File positions without their file identity (inode, fingerprint)."""
    return {partition: position["offset"] for partition, position in positions.items()}


def write_config_for(tmp_path: Path, db: Db, rules: list[dict[str, Any]], **pipeline: Any) -> Path:
    (tmp_path / "in").mkdir(exist_ok=True)
    return write_config(tmp_path / "conduitd.yaml", {
        "service": {"manifest_path": str(tmp_path / "manifest.jsonl")},
        "sources": [{"name": "files", "type": "file", "path": str(tmp_path / "in" / "*.jsonl")}],
        "destinations": [db.destination],
        "resources": [{"name": "people", "source": "files", "destination": "db", "quality_checks": rules,
                       **pipeline}],
    })


def append_lines(path: Path, records: list[dict[str, Any]]) -> list[int]:
    """Append one JSON line per record; return the byte offset where each line starts."""
    starts = []
    offset = path.stat().st_size if path.exists() else 0
    with path.open("a", encoding="utf-8") as handle:
        for record in records:
            line = json.dumps(record) + "\n"
            starts.append(offset)
            handle.write(line)
            offset += len(line.encode())
    return starts


def manifest(tmp_path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (tmp_path / "manifest.jsonl").read_text().splitlines()]


def person(id_: int | None, email: str | None, age: int | None, status: str | None = "new",
           code: str | None = "AB") -> dict[str, Any]:
    return {"id": id_, "email": email, "age": age, "status": status, "code": code}


# Warn rules first: a row that breaks a warn rule and a dlq rule goes to the DLQ all the same.
RULES: list[dict[str, Any]] = [
    {"column": "status", "check": "in_list", "values": ["new", "paid"], "action": "warn"},
    {"column": "code", "check": "regex", "pattern": "[A-Z]{2}", "action": "warn"},
    {"column": "id", "check": "not_null", "action": "fail"},  # broken by no row
    {"column": "email", "check": "not_null", "action": "dlq"},
    {"column": "email", "check": "regex", "pattern": "[^@]+@[^@]+", "action": "dlq"},
    {"column": "id", "check": "unique"},  # action defaults to dlq
    {"column": "age", "check": "range", "min": 0, "max": 120, "action": "dlq", "name": "age_range"},
]
GOOD = [person(1, "a@x.io", 30), person(10, "j@x.io", None, None, None), person(11, "k@x.io", 40, "paid", "ZZ")]
WARNED = [person(8, "h@x.io", 0, "lost"), person(9, "i@x.io", 120, "paid", "A1")]  # range bounds are inclusive
# (record, rule reported, column, value): the first listed rule of the highest action is reported
REJECTED: list[tuple[dict[str, Any], str, str, str | None]] = [
    (person(2, None, 30), "not_null:email", "email", None),
    (person(3, "", 30), "not_null:email", "email", ""),  # also breaks regex:email
    (person(4, "nope", 30), "regex:email", "email", "nope"),
    (person(1, "e@x.io", 30), "unique:id", "id", "1"),  # the second id 1 of the batch
    (person(6, "f@x.io", 121), "age_range", "age", "121"),
    (person(7, "g@x.io", -1, "lost", "zz"), "age_range", "age", "-1"),  # also breaks both warn rules
]


def known_input(tmp_path: Path) -> dict[int, int]:
    """The batch above in file order; returns the start offset of each DLQ-bound record by id."""
    order = [GOOD[0], REJECTED[0][0], REJECTED[1][0], REJECTED[2][0], REJECTED[3][0], REJECTED[4][0],
             REJECTED[5][0], WARNED[0], WARNED[1], GOOD[1], GOOD[2]]
    starts = append_lines(tmp_path / "in" / "a.jsonl", order)
    return {record["id"]: start for record, start in zip(order, starts, strict=True)
            if any(record is r[0] for r in REJECTED)}


def test_every_check_and_action_sorts_rows_into_table_and_dlq(tmp_path: Path, db: Db) -> None:
    config = write_config_for(tmp_path, db, RULES)
    starts = known_input(tmp_path)
    source_bytes = (tmp_path / "in" / "a.jsonl").read_bytes()
    result = conduitd("--once", "-c", str(config))
    assert result.returncode == 0, result.stderr
    assert "11 records read, 5 rows written, 6 to the DLQ" in result.stderr

    assert db.table("people") == sorted(GOOD + WARNED, key=lambda r: r["id"])
    partition = str(tmp_path / "in" / "a.jsonl")
    dlq = db.dlq("people")
    assert sorted((r["payload"]["id"], r["rule"], r["column_name"], r["value"]) for r in dlq) == sorted(
        (record["id"], rule, column, value) for record, rule, column, value in REJECTED)
    by_id = {r["payload"]["id"]: r for r in dlq}
    for record, rule, _, _ in REJECTED:
        row = by_id[record["id"]]
        assert row["payload"] == record  # the original record, not the cast row
        assert row["pipeline"] == "people" and row["partition"] == partition
        assert rule in row["reason"]
        # the position points at the record: the offset just after its line
        assert row["position"]["offset"] > starts[record["id"]], row
        assert source_bytes[row["position"]["offset"] - 1:row["position"]["offset"]] == b"\n", row
    assert offsets(db.checkpoints()) == {partition: (tmp_path / "in" / "a.jsonl").stat().st_size}


def test_manifest_records_counts_per_rule_and_action(tmp_path: Path, db: Db) -> None:
    config = write_config_for(tmp_path, db, RULES)
    known_input(tmp_path)
    partition = str(tmp_path / "in" / "a.jsonl")
    assert conduitd("--once", "-c", str(config)).returncode == 0
    first_end = (tmp_path / "in" / "a.jsonl").stat().st_size
    append_lines(tmp_path / "in" / "a.jsonl", [{**person(12, "l@x.io", 50), "nickname": "el"}])
    assert conduitd("--once", "-c", str(config)).returncode == 0
    assert conduitd("--once", "-c", str(config)).returncode == 0  # nothing new
    first, second, third = manifest(tmp_path)

    assert (first["kind"], first["status"], first["exit_code"]) == ("run", "partial", 0)
    assert isinstance(first["duration_s"], float | int) and 0 <= first["duration_s"] < 60
    (p,) = first["pipelines"]
    assert (p["pipeline"], p["status"], p["table"]) == ("people", "partial", "people")
    assert (p["rows_read"], p["rows_written"], p["dlq_rows"], p["batches"]) == (11, 5, 6, 1)
    assert p["dlq_rows_by_rule"] == {"not_null:email": 2, "regex:email": 1, "unique:id": 1, "age_range": 2}
    # every rule a row broke is counted, also where a higher action decided the row
    assert p["quality"] == {"in_list:status": {"warn": 2}, "regex:code": {"warn": 2},
                            "not_null:email": {"dlq": 2}, "regex:email": {"dlq": 2}, "unique:id": {"dlq": 1},
                            "age_range": {"dlq": 2}}
    assert p["positions_before"] == {} and offsets(p["positions_after"]) == {partition: first_end}
    assert [(c["change"], c["table"], c["applied"]) for c in p["schema_changes"]] == [("create", "people", True)]

    (p,) = second["pipelines"]
    assert (second["status"], second["exit_code"], p["status"]) == ("success", 0, "success")
    assert (p["rows_read"], p["rows_written"], p["dlq_rows"]) == (1, 1, 0)
    assert p["dlq_rows_by_rule"] == {} and p["quality"] == {}
    assert offsets(p["positions_before"]) == {partition: first_end}
    assert offsets(p["positions_after"]) == {partition: (tmp_path / "in" / "a.jsonl").stat().st_size}
    assert [(c["change"], c["column"], c["applied"]) for c in p["schema_changes"]] == [("add", "nickname", True)]

    (p,) = third["pipelines"]
    assert (third["status"], p["rows_read"], p["schema_changes"]) == ("success", 0, [])
    assert p["positions_before"] == p["positions_after"] == second["pipelines"][0]["positions_after"]


def test_action_fail_exits_3_and_leaves_table_and_checkpoint_as_they_were(tmp_path: Path, db: Db) -> None:
    rules: list[dict[str, Any]] = [
        {"column": "email", "check": "regex", "pattern": "[^@]+@[^@]+", "action": "dlq"},
        {"column": "age", "check": "range", "max": 1000, "action": "fail"}]
    config = write_config_for(tmp_path, db, rules)
    source = tmp_path / "in" / "a.jsonl"
    append_lines(source, [person(1, "a@x.io", 30), person(2, "b@x.io", 40)])
    assert conduitd("--once", "-c", str(config)).returncode == 0
    table, checkpoints = db.table("people"), db.checkpoints()
    assert len(table) == 2 and offsets(checkpoints) == {str(source): source.stat().st_size}

    # one good line and one that breaks the fail rule and a dlq rule: fail wins, nothing is written
    append_lines(source, [person(3, "c@x.io", 50), person(4, "nope", 5000)])
    result = conduitd("--once", "-c", str(config))
    assert result.returncode == 3, result.stderr
    assert "range:age" in result.stderr and "'age'" in result.stderr and "5000" in result.stderr
    assert db.table("people") == table
    assert db.dlq("people") == []
    assert db.checkpoints() == checkpoints

    record = manifest(tmp_path)[-1]
    assert (record["status"], record["exit_code"]) == ("failed", 3)
    (p,) = record["pipelines"]
    assert (p["status"], p["rows_written"], p["dlq_rows"]) == ("failed", 0, 0)
    assert p["positions_before"] == p["positions_after"] == checkpoints
    assert "range:age" in (p["error"] or "")


def test_dlq_list_and_replay_move_rows_exactly_once(tmp_path: Path, db: Db) -> None:
    email = {"column": "email", "check": "not_null", "action": "dlq"}
    config = write_config_for(tmp_path, db, [email, {"column": "age", "check": "range", "min": 0, "max": 120,
                                                     "name": "age_range"}])
    append_lines(tmp_path / "in" / "a.jsonl", [
        person(1, "a@x.io", 30), person(2, "b@x.io", 121), person(3, "c@x.io", 150), person(4, "d@x.io", 200),
        person(5, None, 30)])
    assert conduitd("--once", "-c", str(config)).returncode == 0
    assert [r["id"] for r in db.table("people")] == [1]

    listed = conduitd("dlq", "list", "-c", str(config), "-r", "people", "--json")
    assert listed.returncode == 0, listed.stderr
    entries = json.loads(listed.stdout)
    assert sorted((json.loads(e["payload"])["id"], e["rule"], e["column"], e["value"]) for e in entries) == [
        (2, "age_range", "age", "121"), (3, "age_range", "age", "150"), (4, "age_range", "age", "200"),
        (5, "not_null:email", "email", None)]
    assert all(e["pipeline"] == "people" and e["partition"] == str(tmp_path / "in" / "a.jsonl") for e in entries)
    by_rule = conduitd("dlq", "list", "-c", str(config), "-r", "people", "--json", "--rule", "age_range")
    assert sorted(json.loads(e["payload"])["id"] for e in json.loads(by_rule.stdout)) == [2, 3, 4]
    none = conduitd("dlq", "list", "-c", str(config), "-r", "people", "--json", "--rule", "no_such_rule")
    assert json.loads(none.stdout) == []

    # the range is widened (and renamed): 121 and 150 pass now, 200 does not; the email row is not touched
    write_config_for(tmp_path, db, [email, {"column": "age", "check": "range", "max": 160, "name": "age_max"}])
    email_entry = next(e["id"] for e in entries if e["rule"] == "not_null:email")
    replay = conduitd("dlq", "replay", "-c", str(config), "-r", "people", "--rule", "age_range")
    assert replay.returncode == 0, replay.stderr
    assert "replayed 3 DLQ row(s) of people: 2 now in people, 1 still rejected" in replay.stdout
    assert [r["id"] for r in db.table("people")] == [1, 2, 3]
    assert db.table("people")[1:] == [person(2, "b@x.io", 121), person(3, "c@x.io", 150)]
    dlq = db.dlq("people")
    assert sorted((r["payload"]["id"], r["rule"], r["value"]) for r in dlq) == [
        (4, "age_max", "200"), (5, "not_null:email", None)]  # the current rule and reason
    assert email_entry in [r["id"] for r in dlq]  # --rule: the other rows were not replayed
    assert "age_max" in next(r for r in dlq if r["payload"]["id"] == 4)["reason"]

    again = conduitd("dlq", "replay", "-c", str(config), "-r", "people")
    assert again.returncode == 0, again.stderr
    assert "replayed 2 DLQ row(s) of people: 0 now in people, 2 still rejected" in again.stdout
    assert [r["id"] for r in db.table("people")] == [1, 2, 3]
    assert sorted(r["payload"]["id"] for r in db.dlq("people")) == [4, 5]

    write_config_for(tmp_path, db, [email])  # the range rule is dropped
    last = conduitd("dlq", "replay", "-c", str(config), "-r", "people", "--rule", "age_max")
    assert last.returncode == 0 and "1 now in people, 0 still rejected" in last.stdout
    assert conduitd("dlq", "replay", "-c", str(config), "-r", "people", "--rule", "age_max").returncode == 0
    assert [r["id"] for r in db.table("people")] == [1, 2, 3, 4]
    assert [(r["payload"]["id"], r["rule"]) for r in db.dlq("people")] == [(5, "not_null:email")]
    rerun = conduitd("--once", "-c", str(config))  # replay does not touch the checkpoint: nothing is read again
    assert rerun.returncode == 0 and "0 records read" in rerun.stderr
    assert len(db.table("people")) == 4


def test_replay_leaves_unique_rejects_unless_their_rule_is_named(tmp_path: Path, db: Db) -> None:
    """A row `unique` rejected repeats a value its batch wrote: a plain replay, which re-checks it
    as a batch of its own, would store the value twice. It stays unless asked for by name."""
    rules = [{"column": "id", "check": "unique"}, {"column": "email", "check": "not_null"}]
    config = write_config_for(tmp_path, db, rules)
    append_lines(tmp_path / "in" / "a.jsonl", [person(1, "a@x.io", 30), person(1, "again@x.io", 31),
                                               person(2, None, 40)])
    assert conduitd("--once", "-c", str(config)).returncode == 0
    assert sorted((r["payload"]["id"], r["rule"]) for r in db.dlq("people")) == [(1, "unique:id"),
                                                                                 (2, "not_null:email")]
    write_config_for(tmp_path, db, rules[:1])  # the email rule is dropped: that row may go in now

    replay = conduitd("dlq", "replay", "-c", str(config), "-r", "people")
    assert replay.returncode == 0, replay.stderr
    assert "replayed 1 DLQ row(s) of people: 1 now in people, 0 still rejected" in replay.stdout
    assert "left 1 row(s) rejected by a `unique` rule in people_dlq (unique:id)" in replay.stdout
    assert [r["id"] for r in db.table("people")] == [1, 2]
    assert [(r["payload"]["id"], r["rule"]) for r in db.dlq("people")] == [(1, "unique:id")]

    chosen = conduitd("dlq", "replay", "-c", str(config), "-r", "people", "--rule", "unique:id")
    assert chosen.returncode == 0 and "1 now in people" in chosen.stdout and "left" not in chosen.stdout
    assert [(r["id"], r["email"]) for r in db.table("people", order="id, age")] == [(1, "a@x.io"), (1, "again@x.io"),
                                                                                 (2, None)]
    assert db.dlq("people") == []


def test_warned_rows_are_logged(tmp_path: Path, db: Db) -> None:
    config = write_config_for(tmp_path, db, RULES)
    known_input(tmp_path)
    result = conduitd("--once", "-c", str(config))
    assert result.returncode == 0, result.stderr
    assert [r["id"] for r in db.table("people") if r["id"] in (8, 9)] == [8, 9]  # written (passes)
    assert "quality rule 'in_list:status' (warn)" in result.stderr  # logged (fails)
    assert "quality rule 'regex:code' (warn)" in result.stderr


def test_rule_rejects_carry_the_offset_after_their_line(tmp_path: Path, db: Db) -> None:
    config = write_config_for(tmp_path, db, [{"column": "age", "check": "range", "max": 100}])
    source = tmp_path / "in" / "a.jsonl"
    append_lines(source, [person(1, "a@x.io", 30), person(2, "b@x.io", 300), person(3, "c@x.io", 30)])
    assert conduitd("--once", "-c", str(config)).returncode == 0
    (row,) = db.dlq("people")
    first_two = sum(len(json.dumps(person(i, f"{c}@x.io", a)) + "\n") for i, c, a in ((1, "a", 30), (2, "b", 300)))
    assert row["position"] == {"offset": first_two}


def test_failed_manifest_record_carries_the_error_message(tmp_path: Path) -> None:
    db = Db("sqlite", {"name": "db", "type": "sqlite", "path": str(tmp_path / "dest.db")}, path=tmp_path / "dest.db")
    config = write_config_for(tmp_path, db, [{"column": "age", "check": "range", "max": 10, "action": "fail"}])
    append_lines(tmp_path / "in" / "a.jsonl", [person(1, "a@x.io", 30)])
    result = conduitd("--once", "-c", str(config))
    assert result.returncode == 3
    message = result.stderr.strip().splitlines()[-1].removeprefix("conduitd: error: ")
    assert manifest(tmp_path)[-1]["pipelines"][0]["error"] == message


def test_csv_rows_rejected_after_decoding_carry_the_offset_after_their_line(tmp_path: Path, db: Db) -> None:
    """A rule's or a cast's reject of a CSV row points at the row's own line, not its chunk."""
    (tmp_path / "in").mkdir()
    config = write_config(tmp_path / "conduitd.yaml", {
        "sources": [{"name": "files", "type": "file", "path": str(tmp_path / "in" / "*.csv")}],
        "destinations": [db.destination],
        "resources": [{"name": "people", "source": "files", "destination": "db",
                       "quality_checks": [{"column": "age", "check": "range", "max": 100}]}],
    })
    lines = ["id,age\n"] + [f"{i},{300 if i % 3 == 0 else 30}\n" for i in range(1, 10)]
    source = tmp_path / "in" / "a.csv"
    source.write_text("".join(lines))
    assert conduitd("--once", "-c", str(config)).returncode == 0
    data = source.read_bytes()
    rejected = sorted(db.dlq("people"), key=lambda r: r["position"]["offset"])
    assert [r["payload"]["id"] for r in rejected] == [3, 6, 9]
    for row in rejected:
        end = row["position"]["offset"]
        line_start = data.rindex(b"\n", 0, end - 1) + 1
        assert data[end - 1:end] == b"\n" and data[line_start:end] == f"{row['payload']['id']},300\n".encode()
